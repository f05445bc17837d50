"""Program files from strangers, against the exported modules: no code named by a file runs, no secret reaches a
file, and every malformed file ends in a `FileFormatError` naming the file and the field.

Each hostile case runs in a fresh interpreter, so that "not imported" means not imported by this load.
"""
import json
import subprocess
import sys
import textwrap
import warnings

import pytest

from lmtrain.data_models import MathQuestion, NumericalAnswer
from lmtrain.files import FileFormatError
from lmtrain.language_models import LanguageModel
from lmtrain.program_files import load_program
from lmtrain.programs import Generator, Input, Program


def fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


async def make_program(language_model=None) -> Program:
    x = Input(data_model=MathQuestion)
    lm = language_model or LanguageModel.from_function(lambda m: '{"answer": 1}')
    return Program(inputs=x, outputs=await Generator(data_model=NumericalAnswer, language_model=lm, name="solve")(x))


@pytest.fixture
async def saved(tmp_path):
    program = await make_program()
    program.get_module("solve").instructions = "Add."
    return json.loads(program.save(tmp_path / "p.json").read_text())


def write(tmp_path, record, name="hostile.json"):
    path = tmp_path / name
    path.write_text(record if isinstance(record, str) else json.dumps(record))
    return path


@pytest.mark.parametrize("target", ["subprocess:Popen", "os:system", "builtins:eval", "builtins:exec", "importlib:import_module"])
def test_a_module_class_from_the_file_is_never_imported_or_called(tmp_path, saved, target):
    marker = tmp_path / "ran"
    saved["config"]["modules"]["solve"] = {"class": target, "config": {"args": ["touch", str(marker)], "command": f"touch {marker}"}}
    path = write(tmp_path, saved)
    out = fresh(f"""
        import sys
        from lmtrain.program_files import load_program
        from lmtrain.files import FileFormatError
        module = {target.partition(':')[0]!r}
        before = module in sys.modules
        try: load_program({str(path)!r})
        except FileFormatError as e: print(e.field, '|', e)
        else: raise SystemExit('loaded')
        assert before or module not in sys.modules, 'imported ' + module
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    field, _, message = out.stdout.partition(" | ")
    assert field == "config.modules.solve.class" and "not one lmtrain builds from a file" in message and "custom_objects" in message
    assert str(path) in message and not marker.exists()


def test_the_program_class_of_a_subclass_file_is_never_imported(tmp_path, saved):
    for key in ("nodes", "inputs", "outputs", "modules"): saved["config"].pop(key)
    saved["config"]["class"] = "subprocess:Popen"
    with pytest.raises(FileFormatError) as info: load_program(write(tmp_path, saved))
    assert info.value.field == "config.class"


def test_a_data_model_path_is_never_imported(tmp_path, saved):
    site = tmp_path / "site"; site.mkdir()
    (site / "sneaky.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').write('ran')\n")
    saved["config"]["inputs"][0]["data_model"]["import"] = "sneaky:MathQuestion"
    saved["config"]["modules"]["solve"]["config"]["data_model"]["import"] = "sneaky:Answer"
    path = write(tmp_path, saved)
    out = fresh(f"""
        import sys
        sys.path.insert(0, {str(site)!r})
        from lmtrain.language_models import LanguageModel
        from lmtrain.program_files import load_program
        program = load_program({str(path)!r}, language_model=LanguageModel.from_function(lambda m: '{{"answer": 2}}'))
        assert 'sneaky' not in sys.modules
        print(sorted(program.outputs[0].data_model.model_fields))
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "['answer']" and not (tmp_path / "imported").exists()


async def test_a_saved_program_round_trips_exactly(tmp_path):
    program = await make_program()
    path = program.save(tmp_path / "a.json")
    again = load_program(path)
    assert again.get_state() == program.get_state()
    assert again.save(tmp_path / "b.json").read_bytes() == path.read_bytes()


async def test_secrets_never_reach_the_file(tmp_path):
    secrets = dict(api_key="sk-SECRET", extra_headers={"Authorization": "Bearer SECRET"}, azure_ad_token="SECRET",
                   aws_session_token="SECRET", vertex_credentials="SECRET", client_secret="SECRET")
    program = await make_program(LanguageModel("azure/gpt-4o", **secrets))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = program.save(tmp_path / "p.json").read_text()
    assert "SECRET" not in text and "Bearer" not in text
    assert any("pass language_model=" in str(w.message) for w in caught)
    # loading it back says what is missing, and the caller's model fills the gap
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_program(tmp_path / "p.json")
    assert loaded.generators[0].language_model.litellm_kwargs == {}
    assert any("saved without" in str(w.message) for w in caught)


MALFORMED = {
    "empty": "",
    "not json": "{'format': 'lmtrain.program'}",
    "a list": "[]",
    "a number": "3",
    "deep": "[" * 50_000 + "]" * 50_000,
    "bad utf-8": b"\xff\xfe{}",
    "wrong format": {"format": "lmtrain.rollouts", "version": 1, "state": {"modules": {}}},
    "wrong version": {"format": "lmtrain.program", "version": 2, "state": {"modules": {}}},
    "version as text": {"format": "lmtrain.program", "version": "1", "state": {"modules": {}}},
    "no state": {"format": "lmtrain.program", "version": 1},
    "state modules a list": {"format": "lmtrain.program", "version": 1, "state": {"modules": []}},
    "config a string": {"format": "lmtrain.program", "version": 1, "state": {"modules": {}}, "config": "x"},
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_file_is_a_typed_error_naming_the_file(tmp_path, name):
    path = tmp_path / "bad.json"
    data = MALFORMED[name]
    path.write_bytes(data if isinstance(data, bytes) else (data if isinstance(data, str) else json.dumps(data)).encode())
    with pytest.raises(FileFormatError) as info: load_program(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("change, field", [
    (lambda r: r["config"]["modules"]["solve"].pop("config"), "config.modules.solve.config"),
    (lambda r: r["config"]["modules"]["solve"]["config"].update(data_model={"name": "X"}), "config.modules.solve.config.data_model.import"),
    (lambda r: r["config"]["modules"]["solve"]["config"]["data_model"].update(schema={"title": "X", "properties": {"a": {"$ref": "#/$defs/A"}}}),
     "config.modules.solve.config.data_model.schema"),
    (lambda r: r["config"]["nodes"][0].update(module="ghost"), "config.nodes.0.module"),
    (lambda r: r["config"]["inputs"][0].update(id=5), "config.inputs.0.id"),
    (lambda r: r["config"]["modules"]["solve"]["config"].update(language_model={"model": "openai/x", "cache": "/etc"}),
     "config.modules.solve.config.language_model"),
    (lambda r: r["state"]["modules"]["solve"].update(instructions=["a list"]), "state"),
    # found by tests/test_fuzz_files.py: a model name that is a list was looked up in a dict (TypeError: unhashable)
    (lambda r: r["config"]["modules"]["solve"]["config"]["language_model"].update(model=["openai/x"]),
     "config.modules.solve.config.language_model"),
])
def test_a_wrong_field_is_named(tmp_path, saved, change, field):
    change(saved)
    with pytest.raises(FileFormatError) as info: load_program(write(tmp_path, saved))
    assert info.value.field == field, str(info.value)


def test_a_huge_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.json"
    path.write_bytes(b" " * 2048)
    with pytest.raises(FileFormatError, match="max_bytes=1024"): Program.from_file(path, max_bytes=1024)


def test_programs_does_not_import_the_floors_above_it():
    # the package's attach hook (lesson 00) imports those floors on purpose; without it, programs imports none of them
    out = fresh("import sys, lmtrain; sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != '_AttachFloors']; "
                "import lmtrain.programs; print(sorted(m for m in ('lmtrain.training', 'lmtrain.program_files', 'lmtrain.callbacks') if m in sys.modules))")
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_the_package_attaches_compile_and_save_to_program():
    out = fresh("""
        from lmtrain.programs import Program
        import lmtrain
        assert callable(Program.compile) and callable(Program.fit) and callable(Program.save) and callable(lmtrain.Program.evaluate)
    """)
    assert out.returncode == 0, out.stderr[-2000:]

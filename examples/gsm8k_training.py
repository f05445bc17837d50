"""The seed tutorial's GSM8K benchmark, ported to lmtrain.

Two changes from the original script: `import synalinks` became `import lmtrain` (every
`synalinks.X` is now `lmtrain.X`), and the model is the embedded SmolLM2-135M-Instruct that
runs in process on a CPU (no per-call timeout: on a busy CPU a batch of long replies takes
longer than the default 60 s, which counts the time a request waits for its batch).
`NB_SAMPLES` keeps the run short on two CPU cores; `NB_SAMPLES=0` uses the whole dataset as
the original did. Offline, point `LMTRAIN_DATA` at a folder with GSM8K's train.jsonl and test.jsonl.

    python examples/gsm8k_training.py
"""
import asyncio
import os

import lmtrain

NB_EPOCHS = int(os.environ.get("NB_EPOCHS", 2))
BATCH_SIZE = int(os.environ.get("BATCH_SIZE", 32))
NB_SAMPLES = int(os.environ.get("NB_SAMPLES", 8)) or None
NB_RUNS = int(os.environ.get("NB_RUNS", 3))

FOLDER = os.environ.get("FOLDER", "examples/training_programs")

checkpoint_filepath = "checkpoint.program.json"


async def main():
    language_model = lmtrain.LanguageModel(
        model="local/smollm2-135m-instruct",
        timeout=None,
    )
    print("Loading GSM8k dataset...")
    (x_train, y_train), (x_test, y_test) = lmtrain.datasets.gsm8k.load_data()

    if NB_SAMPLES:
        x_train = x_train[:NB_SAMPLES]
        y_train = y_train[:NB_SAMPLES]
        x_test = x_test[:NB_SAMPLES]
        y_test = y_test[:NB_SAMPLES]

    print("Done.")

    print("Creating program...")
    inputs = lmtrain.Input(
        data_model=lmtrain.datasets.gsm8k.get_input_data_model(),
    )
    outputs = await lmtrain.Generator(
        data_model=lmtrain.datasets.gsm8k.get_output_data_model(),
        language_model=language_model,
    )(inputs)
    program = lmtrain.Program(
        inputs=inputs,
        outputs=outputs,
        name="gsm8k_baseline",
        description="The GSM8k baseline",
    )

    lmtrain.utils.plot_program(
        program,
        to_folder=FOLDER,
        show_module_names=True,
        show_schemas=True,
        show_trainable=True,
    )

    print("Compiling...")
    program.compile(
        reward=lmtrain.rewards.ExactMatch(in_mask=["answer"]),
        optimizer=lmtrain.optimizers.RandomFewShot(),
    )
    print("Done.")

    print(f"Perform baseline evaluation samples with {NB_RUNS} runs...")
    baseline_metric_list = []
    for i in range(NB_RUNS):
        print(f"Run {i + 1}/{NB_RUNS}")
        metrics = await program.evaluate(
            x=x_test,
            y=y_test,
            batch_size=BATCH_SIZE,
        )
        baseline_metric_list.append(metrics)
    print("Done.")

    lmtrain.utils.plot_metrics_with_mean_and_std(
        baseline_metric_list,
        to_folder=FOLDER,
        title="Evaluation without training",
    )

    program.compile(
        reward=lmtrain.rewards.ExactMatch(in_mask=["answer"]),
        optimizer=lmtrain.optimizers.RandomFewShot(),
    )

    program_checkpoint_callback = lmtrain.callbacks.ProgramCheckpoint(
        filepath=os.path.join(FOLDER, checkpoint_filepath),
        monitor="val_reward",
        mode="max",
        save_best_only=True,
    )

    print(f"Start training for {NB_EPOCHS} epochs...")
    history = await program.fit(
        x=x_train,
        y=y_train,
        validation_data=(x_test, y_test),
        epochs=NB_EPOCHS,
        batch_size=BATCH_SIZE,
        callbacks=[program_checkpoint_callback],
    )
    print("Done.")

    lmtrain.utils.plot_history(
        history,
        to_folder=FOLDER,
        to_file="gsm8k_baseline_training_history.png",
    )

    print("Load best performing checkpoint...")
    program.load(os.path.join(FOLDER, checkpoint_filepath))
    print("Done.")

    print("Perform final evaluation...")
    trained_metric_list = []
    for i in range(NB_RUNS):
        print(f"Run {i + 1}/{NB_RUNS}")
        metrics = await program.evaluate(
            x=x_test,
            y=y_test,
            batch_size=BATCH_SIZE,
        )
        trained_metric_list.append(metrics)
    print("Done.")

    metrics_comparison = {
        "without_training": baseline_metric_list,
        "with_training": trained_metric_list,
    }

    lmtrain.utils.plot_metrics_comparison_with_mean_and_std(
        metrics_comparison,
        to_folder=FOLDER,
        to_file="gsm8k_evaluation_comparison.png",
        title="Comparison w/o training (GSM8K with EM reward)",
    )


if __name__ == "__main__":
    asyncio.run(main())

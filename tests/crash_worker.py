"""`lmtrain train` in this process, killed with SIGKILL at a chosen moment of a checkpoint write (for tests/test_crash.py).

LMTRAIN_KILL_AT=<point>:<n> kills the process the n-th time the checkpoint write reaches <point>:
  temp-made        the temporary folder exists, nothing written in it yet
  state-written    state.pt is written, meta.json is not
  before-rename    the new folder is complete, the old one not yet moved aside
  between-renames  the old one is aside, the new one not yet in its place
  after-renames    the new one is in place, the old one not yet deleted
A SIGKILL cannot be caught: nothing gets to clean up, as with a power cut or the OOM killer.
"""
import os, signal, sys

import torch

import lmtrain.files as files

point, _, nth = os.environ.get("LMTRAIN_KILL_AT", "none:0").partition(":")
seen = {}

def hit(name: str):
    seen[name] = seen.get(name, 0) + 1
    if name == point and seen[name] == int(nth): os.kill(os.getpid(), signal.SIGKILL)

real_mkdtemp, real_save, real_replace, real_remove = files.tempfile.mkdtemp, torch.save, os.replace, files._remove

def mkdtemp(*args, **kwargs):
    folder = real_mkdtemp(*args, **kwargs)
    if ".last.tmp-" in folder: hit("temp-made")
    return folder

def save(obj, f, *args, **kwargs):
    real_save(obj, f, *args, **kwargs)
    if str(f).endswith("state.pt") and ".last.tmp-" in str(f): hit("state-written")

def replace(src, dst):
    if str(dst).endswith(".last.old"): hit("before-rename")
    elif ".last.tmp-" in str(src): hit("between-renames")
    real_replace(src, dst)

def remove(path):
    if str(path).endswith(".last.old"): hit("after-renames")
    real_remove(path)

files.tempfile.mkdtemp, torch.save, os.replace, files._remove = mkdtemp, save, replace, remove

from lmtrain.cli import main
sys.exit(main(sys.argv[1:]))

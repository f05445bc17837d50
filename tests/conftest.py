"""Hypothesis profiles: `make test` checks the same examples on every clone; `make fuzz` explores new ones.

A property test that draws fresh examples on every run finds bugs (one found that `\\boxed{}` before `#### 0`
hid the answer), but then a change unrelated to the bug fails CI by chance. So the default profile is
derandomized, and `make fuzz` (HYPOTHESIS_PROFILE=explore) draws new examples on every run, to hunt (and many more
of them for the fuzz suites, whose size LMTRAIN_FUZZ_EXAMPLES sets).
A bug it finds becomes an `@example` next to the property, so that it is checked on every run after.
"""
import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

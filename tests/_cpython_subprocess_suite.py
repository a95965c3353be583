"""Run CPython's own test_subprocess with subprocess.Popen running programs in a space.

    python tests/_cpython_subprocess_suite.py [TEST_ID_SUBSTRING...]

subprocess.Popen is replaced by a subclass of sameprocess.Popen bound to one
open Space, so subprocess.run, call, check_output and every Popen the suite
creates start CPython, sh and the other programs it uses in the space.  The
tests of what the design refuses are run too, each expecting its refusal (a
ValueError naming the argument), or are left out when they test
subprocess's own fork machinery, which a space does not use.

Prints one JSON object on the last line of stdout: the counts, and the ids of
tests that did not pass or did not end as expected.
"""
from __future__ import annotations

import json
import subprocess
import sys
import unittest

# Tests of what a space refuses by design, by the argument they need.  Each
# must fail with exactly this ValueError (see README "Python API").
REFUSED = {
    "preexec_fn": ["test_preexec", "test_preexec_exception",
                   "test_preexec_errpipe_does_not_double_close_pipes",
                   "test_preexec_gc_module_failure", "test_preexec_fork_failure",
                   "test_close_fds_after_preexec", "test_surrogates_error_message"],
    "user": ["test_user"],
    "group": ["test_group"],
    "extra_groups": ["test_extra_groups"],
}
# (test_user_error, test_group_error and test_extra_groups_error expect a
# ValueError and run only where the platform lacks setreuid and friends.)

# Tests of subprocess's fork/exec machinery (they mock or call
# _posixsubprocess.fork_exec, subprocess._fork_exec or its vfork switch) and
# of the repr's class name ("<Popen: ...>"; a space's says
# "<sameprocess.Popen: ...>"): a program of a space is not started that way
# and its Popen is a subclass.  Left out.
NOT_APPLICABLE = [
    "test__use_vfork", "test_exception_errpipe_normal", "test_exception_errpipe_bad_data",
    "test_fork_exec", "test_fork_exec_sorted_fd_sanity_check", "test_repr",
]

CLASSES = ["ProcessTestCase", "POSIXProcessTestCase", "RunFuncTestCase", "MiscTests",
           "ContextManagerTests", "CommandsWithSpaces"]


def bind_popen(space):
    """subprocess.Popen's signature, starting programs in space."""
    import sameprocess

    class SpacePopen(sameprocess.Popen):
        def __init__(self, args, *popen_args, **kwargs):
            super().__init__(space, args, *popen_args, **kwargs)

    return SpacePopen


def method_name(test: unittest.TestCase) -> str:
    return test.id().rsplit(".", 1)[-1]


def select_tests(module, only: list[str]) -> tuple[list, dict[str, str]]:
    """The tests to run as they are, and the refused ones with their argument."""
    refused_by_name = {name: arg for arg, names in REFUSED.items() for name in names}
    loader = unittest.TestLoader()
    plain, refused = [], {}
    for class_name in CLASSES:
        for test in loader.loadTestsFromTestCase(getattr(module, class_name)):
            name = method_name(test)
            if only and not any(part in test.id() for part in only):
                continue
            if name in refused_by_name:
                refused[test] = refused_by_name[name]
            elif name not in NOT_APPLICABLE:
                plain.append(test)
    return plain, refused


class RefusalCheck(unittest.TestCase):
    """A refused test must fail with the space's ValueError for its argument."""

    def __init__(self, test: unittest.TestCase, argument: str) -> None:
        super().__init__("check")
        self.test, self.argument = test, argument

    def id(self) -> str:
        return self.test.id()

    def check(self) -> None:
        result = unittest.TestResult()
        self.test.run(result)
        if result.skipped:  # e.g. a platform without setreuid
            self.skipTest(result.skipped[0][1])
        problems = result.errors + result.failures
        expected = f"{self.argument} is not supported for programs in a space"
        self.assertTrue(problems, f"{self.test.id()} passed, but {self.argument} is refused")
        for _, trace in problems:
            self.assertIn(expected, trace)


def main(only: list[str]) -> int:
    from sameprocess import Space

    with Space() as space:
        subprocess.Popen = bind_popen(space)
        # Imported now, so that the suite's own Popen subclasses derive from it.
        from test import test_subprocess
        plain, refused = select_tests(test_subprocess, only)
        suite = unittest.TestSuite(plain + [RefusalCheck(t, arg) for t, arg in refused.items()])
        result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
    summary = {
        "ran": result.testsRun,
        "skipped": len(result.skipped),
        "failed": sorted(test.id() for test, _ in result.failures + result.errors),
        "unexpected_successes": sorted(test.id() for test in result.unexpectedSuccesses),
    }
    print(json.dumps(summary))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

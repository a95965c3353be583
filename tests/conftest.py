"""Shared fixtures.

build: session-scoped; build("hello.c") -> absolute path of the compiled
program (see tests/_build.py for flags, variants and the cache).  The cache
is under pytest's basetemp, or $SAMEPROCESS_TEST_CACHE when that is set (it
then survives between runs; keys include sources, flags and compiler
versions, so it never serves a stale build).  A compile error or a missing
compiler fails the test with the compiler's output or the package to install.

This file must not import sameprocess: the program and native-build tests run
even while the core does not import.
"""
from __future__ import annotations

import os
import signal

import pytest

import _build

# The suite asserts that programs see the signal dispositions their launcher
# had, and expects those to be a terminal's.  A background job of a
# non-interactive shell (`scripts/test.sh &`) starts with SIGINT and SIGQUIT
# ignored: give them back their usual handling so that the run does not
# depend on how it was started.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


class PytestBuilder(_build.Builder):
    """A Builder whose failures fail the calling test with a readable message."""

    def __call__(self, *args, **kwargs) -> str:
        try:
            return super().__call__(*args, **kwargs)
        except _build.BuildError as exc:
            pytest.fail(str(exc), pytrace=False)

    def program(self, variant: str) -> str:
        try:
            return super().program(variant)
        except _build.BuildError as exc:
            pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> PytestBuilder:
    cache = os.environ.get("SAMEPROCESS_TEST_CACHE")
    if cache:
        return PytestBuilder(cache)
    return PytestBuilder(tmp_path_factory.mktemp("programs", numbered=False))


@pytest.fixture
def space():
    """An open sameprocess.Space for one test; closed (programs killed) after it."""
    from sameprocess import Space  # imported here: see the module docstring

    with Space() as opened:
        yield opened

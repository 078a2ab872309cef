"""Fixtures for core's tests.

Most tests run twice, once on ``core`` and once on the standard library's
``socketserver`` (the ``ss`` fixture): the stdlib run shows the test asserts what
CPython does, the core run that core does the same.  ``kind`` runs a test over the
four socket types with a matching client.
"""

import socketserver

import pytest

import core

from .helpers import KINDS, Kind


@pytest.fixture(params=["core", "stdlib"])
def ss(request):
    return core if request.param == "core" else socketserver


@pytest.fixture(params=KINDS, ids=[k[0] for k in KINDS])
def kind(request, sockdir):
    return Kind(*request.param, sockdir)


STREAM_KINDS = [k for k in KINDS if k[3]]


@pytest.fixture(params=STREAM_KINDS, ids=[k[0] for k in STREAM_KINDS])
def stream_kind(request, sockdir):
    return Kind(*request.param, sockdir)

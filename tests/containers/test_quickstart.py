"""The e2e quickstart (tests/e2e/test_quickstart.py), unchanged, against the compose
stack: the same tests, their `stack` the ComposeHandle of this directory's conftest."""

from __future__ import annotations

import pytest

from tests.e2e.test_quickstart import (  # noqa: F401  (collected here)
    api,
    test_approve_of_a_draft_that_is_not_ready_is_409,
    test_approve_push_replay_and_audit_as_in_the_quickstart,
    test_docs_list_the_approve_push_and_retry_routes,
    test_push_without_an_active_connector_is_400,
    test_retry_flow_after_a_failure_gives_two_exports,
)

pytestmark = pytest.mark.stack

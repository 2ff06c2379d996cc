"""The API: pydantic models of Pipeline, Release, Approval and Rollback — the source of truth for crds/."""

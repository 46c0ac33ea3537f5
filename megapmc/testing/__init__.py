"""Helpers shared by the test suite: gloo process launchers and small generated fixtures."""

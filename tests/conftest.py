"""Shared fixtures live in tests/fixtures/; they are registered here."""
pytest_plugins = [
    "tests.fixtures.pki",
    "tests.fixtures.postgres",
    "tests.fixtures.exchange",
]

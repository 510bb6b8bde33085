"""Network-namespace lab for media tests: load the fixtures with ``from tests.lab.fixtures import *``
in a conftest, or ``pytest_plugins = ["tests.lab.fixtures"]`` in the top-level one."""

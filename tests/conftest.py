import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests: tiny convolutions on two busy threads spin and wait (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_instance():
    """A local Ray instance (3 logical CPUs) for the tests that run real Ray workers; shut down at the end."""
    import ray  # the ray extra: make install installs it

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, logging_level="error")
    yield ray
    ray.shutdown()

import warnings

import pytest
import torch

# transformers warns once per function that it falls back to its PyTorch implementation.
warnings.filterwarnings("ignore", message=".*falling back to its reference PyTorch implementation.*")
# One thread: CI machines are small and shared; the ops' results do not depend on threads.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _unpatched():
    """Every test starts and ends with transformers unpatched."""
    import linattn.torch as lt

    lt.unpatch()
    yield
    lt.unpatch()


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)

"""The rollout state's safe files: what goes in comes back, and what cannot be plain data is named."""

import numpy as np
import pytest
import torch

from trl_embodied.trainer.rollout_state import NotPlainData, load_tree, save_tree


def test_a_tree_comes_back_with_its_types(tmp_path):
    tree = {
        "counters": [0, 1.5, True, None, "text"],
        "state": {
            "cell": (1, 2),
            "open": frozenset({"fridge", "microwave"}),
            "places": (("held",), ("bowl",)),
        },
        "mask": np.array([1, 0, 1], dtype=np.int8),
        "symbolic": np.zeros((2, 3), dtype=np.float32),
        "scalar": np.float32(0.25),
        "buffer": [{"chosen": torch.tensor([1, 0]), "values": torch.rand(2, 3)}],
        "generator": torch.Generator().manual_seed(3).get_state(),
    }
    save_tree(tree, tmp_path / "state.json", tmp_path / "state.safetensors")
    back = load_tree(tmp_path / "state.json", tmp_path / "state.safetensors")
    assert back["counters"] == tree["counters"] and back["state"] == tree["state"]
    assert isinstance(back["state"]["cell"], tuple) and isinstance(back["state"]["open"], frozenset)
    assert back["mask"].dtype == np.int8 and back["symbolic"].shape == (2, 3) and back["scalar"] == 0.25
    assert torch.equal(back["buffer"][0]["chosen"], tree["buffer"][0]["chosen"])
    assert torch.equal(back["buffer"][0]["values"], tree["buffer"][0]["values"])
    restored = torch.Generator()
    restored.set_state(back["generator"])
    assert torch.equal(
        torch.rand(4, generator=restored), torch.rand(4, generator=torch.Generator().manual_seed(3))
    )
    assert not list(tmp_path.glob("*.tmp"))  # staged files were renamed into place


@pytest.mark.parametrize(
    ("tree", "where"),
    [
        ({"slots": [{"info": {"engine": object()}}]}, r"state\.slots\.0\.info\.engine is a builtins\.object"),
        ({"info": {1: "a"}}, "state.info has non-string keys"),
        ({"info": {"__tuple__": [1]}}, "state.info has a key reserved for the encoding"),
        ({"array": np.array(["a"], dtype=object)}, "state.array is a numpy array of object"),
    ],
)
def test_what_is_not_plain_data_is_named(tmp_path, tree, where):
    with pytest.raises(NotPlainData, match=where):
        save_tree(tree, tmp_path / "state.json", tmp_path / "state.safetensors")
    assert not (tmp_path / "state.json").exists()

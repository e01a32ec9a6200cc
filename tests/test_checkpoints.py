"""Checkpoints: weights-only round trip, rebuilding without the command, clear errors on misfits."""

import pytest
import torch
from omegaconf import OmegaConf

from losslandscape.training.checkpoints import (
    CheckpointError,
    load_checkpoint,
    load_into_configured_model,
    model_from_checkpoint,
    save_checkpoint,
)
from losslandscape.models.cnn import SmallCNN

CNN_CFG = {"_target_": "losslandscape.models.cnn.SmallCNN", "channels": [4, 8], "batch_norm": True, "hidden": 16}
MLP_CFG = {"_target_": "losslandscape.models.mlp.MLP", "hidden": [8]}


@pytest.fixture
def cnn_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN((1, 8, 8), 10, channels=(4, 8), batch_norm=True, hidden=16)
    path = tmp_path / "final.pt"
    metadata = {"model": CNN_CFG, "dataset": {"_target_": "digits"}, "input_shape": [1, 8, 8], "num_classes": 10, "epoch": 3}
    save_checkpoint(path, model, metadata)
    return path, model


def test_checkpoint_rebuilds_the_model_from_the_file_alone(cnn_checkpoint):
    path, original = cnn_checkpoint
    rebuilt = model_from_checkpoint(path)
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(rebuilt(x), original.eval()(x), rtol=0, atol=0)
    assert load_checkpoint(path)["epoch"] == 3


def test_checkpoint_loads_with_weights_only(cnn_checkpoint):
    path, _ = cnn_checkpoint
    data = torch.load(path, weights_only=True)  # raises if anything but tensors and plain data were pickled
    assert set(data) >= {"format", "state_dict", "model", "input_shape", "num_classes"}


def test_checkpoint_of_another_architecture_is_explained(cnn_checkpoint):
    path, _ = cnn_checkpoint
    with pytest.raises(CheckpointError) as error:
        load_into_configured_model(path, OmegaConf.create(MLP_CFG), (1, 8, 8), 10)
    message = str(error.value)
    assert "was trained with model losslandscape.models.cnn.SmallCNN and does not fit MLP" in message
    assert "Configure the model the weights were saved from" in message


def test_checkpoint_of_another_dataset_shape_is_explained(cnn_checkpoint):
    path, _ = cnn_checkpoint
    with pytest.raises(CheckpointError, match=r"trained on inputs \(1, 8, 8\) with 10 classes .* configured dataset has inputs \(3, 32, 32\) with 10 classes"):
        load_into_configured_model(path, OmegaConf.create(CNN_CFG), (3, 32, 32), 10)


def test_missing_and_foreign_files_are_explained(tmp_path):
    with pytest.raises(CheckpointError, match=f"checkpoint not found: {tmp_path / 'nope.pt'}"):
        load_checkpoint(tmp_path / "nope.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="is not a losslandscape checkpoint"):
        load_checkpoint(foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(garbage)

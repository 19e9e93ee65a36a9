"""Model sources (torchvision arch, factory, state_dict, nested checkpoint, TorchScript, pickled module)
and realistic random weights."""
from __future__ import annotations

import pytest
import torch

from converter.core.errors import ModelLoadError
from converter.models import build_model, example_args, image_batch, instantiate, realistic_init
from converter.zoo import Preprocess
from converter.zoo import ModelEntry, load_zoo
from tests.conftest import tiny_entry
from tests.tiny_models import tiny_cnn


def entry_of(write_zoo, **fields) -> ModelEntry:
    return load_zoo(write_zoo(models=[tiny_entry(**fields)])).models[0]


def logits(module, entry, batch=4):
    with torch.no_grad():
        return module(*example_args(entry, batch))


def test_factory_random_weights_are_deterministic_per_seed(write_zoo):
    first, again = build_model(entry_of(write_zoo)), build_model(entry_of(write_zoo))
    other = build_model(entry_of(write_zoo, seed=1))
    assert first.source_kind == "random"
    assert first.weights_sha256 == again.weights_sha256
    assert first.weights_sha256 != other.weights_sha256
    entry = entry_of(write_zoo)
    assert torch.equal(logits(first.module, entry), logits(again.module, entry))


def test_arch_args_and_num_classes_reach_the_factory(write_zoo):
    """`arch_args` and `num_classes` are the factory's keyword arguments (a bug that dropped either would build
    the default 10-class, width-8 net and still run)."""
    entry = entry_of(write_zoo, num_classes=3, arch_args={"width": 4})
    module = build_model(entry).module
    assert module.classifier.out_features == 3 and module.features[0].out_channels == 4
    assert logits(module, entry).shape == (4, 3)


def test_state_dict_checkpoint_reproduces_the_model(write_zoo, tmp_path):
    source = build_model(entry_of(write_zoo, seed=3))
    torch.save(source.module.state_dict(), tmp_path / "plain.pt")
    entry = entry_of(write_zoo, weights=None, checkpoint="plain.pt")
    built = build_model(entry)
    assert built.source_kind == "state_dict"
    assert built.weights_sha256 == source.weights_sha256
    assert torch.equal(logits(built.module, entry), logits(source.module, entry))


def test_nested_checkpoint_with_key_and_dataparallel_prefix(write_zoo, tmp_path):
    source = build_model(entry_of(write_zoo, seed=4))
    state = {f"module.{k}": v for k, v in source.module.state_dict().items()}
    torch.save({"epoch": 14, "model_state_dict": state, "loss": 0.25}, tmp_path / "checkpoint_14_epoch.pkl")
    entry = entry_of(write_zoo, weights=None, checkpoint="checkpoint_14_epoch.pkl", state_dict_key="model_state_dict")
    built = build_model(entry)
    assert built.weights_sha256 == source.weights_sha256


def test_absent_state_dict_key_names_what_is_there(write_zoo, tmp_path):
    torch.save({"epoch": 1, "state_dict": {}}, tmp_path / "c.pkl")
    entry = entry_of(write_zoo, weights=None, checkpoint="c.pkl", state_dict_key="model_state_dict")
    with pytest.raises(ModelLoadError, match=r"'model_state_dict' is absent \(found: epoch, state_dict\)"):
        build_model(entry)


def test_nested_checkpoint_without_key_says_so(write_zoo, tmp_path):
    torch.save({"epoch": 1, "model_state_dict": {"w": torch.zeros(1)}}, tmp_path / "c.pkl")
    with pytest.raises(ModelLoadError, match="name it with state_dict_key"):
        build_model(entry_of(write_zoo, weights=None, checkpoint="c.pkl"))


def test_mismatched_state_dict_names_first_keys(write_zoo, tmp_path):
    state = tiny_cnn(num_classes=3).state_dict()  # the zoo says 10 classes
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(ModelLoadError) as info:
        build_model(entry_of(write_zoo, weights=None, checkpoint="wrong.pt"))
    message = str(info.value)
    assert "classifier.weight (3, 16) vs (10, 16)" in message and "extra.weight" in message


def test_truncated_checkpoint_is_a_clear_error(write_zoo, tmp_path):
    torch.save(tiny_cnn().state_dict(), tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="not a readable torch checkpoint"):
        build_model(entry_of(write_zoo, weights=None, checkpoint="cut.pt"))


def test_file_that_is_not_a_checkpoint_is_a_clear_error(write_zoo, tmp_path):
    (tmp_path / "notes.pt").write_text("hello, not a checkpoint\n")
    with pytest.raises(ModelLoadError, match="not a readable torch checkpoint"):
        build_model(entry_of(write_zoo, weights=None, checkpoint="notes.pt"))


def test_torchscript_source(write_zoo, tmp_path):
    source = build_model(entry_of(write_zoo, seed=5))
    torch.jit.save(torch.jit.trace(source.module, torch.zeros(1, 3, 32, 32)), str(tmp_path / "model.ts"))
    entry = entry_of(write_zoo, arch=None, weights=None, num_classes=None, checkpoint="model.ts", trust_pickle=True)
    built = build_model(entry)
    assert built.source_kind == "torchscript" and built.trusted_pickle
    assert torch.allclose(logits(built.module, entry), logits(source.module, entry), atol=1e-6)


class _Sentinel:
    """Unpickling this writes a file: what a malicious checkpoint would do."""

    path = None

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_unsafe_pickle_is_refused_and_never_runs(write_zoo, tmp_path):
    sentinel = tmp_path / "pwned"
    _Sentinel.path = sentinel
    torch.save({"model_state_dict": tiny_cnn().state_dict(), "payload": _Sentinel()}, tmp_path / "evil.pkl")
    entry = entry_of(write_zoo, weights=None, checkpoint="evil.pkl", state_dict_key="model_state_dict")
    with pytest.raises(ModelLoadError, match=r"refused by weights-only loading.*references _?io\.open.*trust_pickle"):
        build_model(entry)
    assert not sentinel.exists()


def test_whole_pickled_module_needs_trust(write_zoo, tmp_path):
    source = build_model(entry_of(write_zoo, seed=6))
    torch.save(source.module, tmp_path / "whole.pkl")
    refused = entry_of(write_zoo, weights=None, checkpoint="whole.pkl")
    with pytest.raises(ModelLoadError, match="refused by weights-only loading"):
        build_model(refused)
    trusted = entry_of(write_zoo, arch=None, weights=None, checkpoint="whole.pkl", trust_pickle=True)
    built = build_model(trusted)
    assert built.source_kind == "pickled_module" and built.weights_sha256 == source.weights_sha256


def test_non_finite_weights_are_named(write_zoo, tmp_path):
    state = tiny_cnn().state_dict()
    state["features.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(ModelLoadError, match="non-finite weights in features.0.weight"):
        build_model(entry_of(write_zoo, weights=None, checkpoint="nan.pt"))


def test_factory_returning_a_non_module(write_zoo):
    with pytest.raises(ModelLoadError, match="not a torch.nn.Module"):
        build_model(entry_of(write_zoo, arch="tests.tiny_models:not_a_module"))


# Realistic random weights on real torchvision nets. Their default init is degenerate: a parity check on
# such logits passes vacuously, which is why weights: random re-initialises.
REAL_NETS = [
    ("efficientnet_b0", {}, 224),
    ("mobilenet_v3_small", {}, 224),
    ("vit_b_16", {}, 224),
    ("inception_v3", {"aux_logits": False, "init_weights": False}, 299),
]


@pytest.mark.slow
@pytest.mark.parametrize("arch,kwargs,size", REAL_NETS, ids=[n[0] for n in REAL_NETS])
def test_realistic_weights_give_healthy_logits(arch, kwargs, size):
    settings = Preprocess(resize=size + size // 7, crop=size)
    module = instantiate(f"torchvision:{arch}", kwargs, seed=0)
    realistic_init(module, 0, settings, batches=2, batch_size=4)
    # held-out images: the verifier's default set (seed 0), never used for calibration
    images = image_batch(settings, 4, seed=0)
    with torch.no_grad():
        out = module.eval()(images)
    assert torch.isfinite(out).all()
    per_sample_std = out.std(dim=1)
    # Typical spread is healthy and no sample is flat. Squeeze-excitation nets (efficientnet, mobilenet_v3)
    # give a few images far larger logits (std up to ~70); the verifier's tolerance scales per sample.
    assert 0.1 < per_sample_std.median() < 5, per_sample_std
    assert (per_sample_std > 0.05).all(), per_sample_std
    # distinct inputs give distinct predictions: the logits carry information about the input
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_realistic_init_reinitialises_every_layer_and_recalibrates_batchnorm():
    """Every conv and linear layer gets new seeded weights, and BatchNorm statistics come from the calibration
    images (not the factory's zeros and ones); the same seed gives the same weights bit for bit."""
    settings = Preprocess(resize=36, crop=32)
    module = tiny_cnn()
    before = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    realistic_init(module, 7, settings, batches=2, batch_size=4)
    after = module.state_dict()
    for name in before:
        if name.endswith(("weight", "bias")) and not name.startswith(("features.1", "features.4", "features.7")):
            assert not torch.equal(before[name], after[name]), f"{name} was not re-initialised"
    for index in (1, 4, 7):  # the BatchNorm layers
        assert after[f"features.{index}.running_mean"].abs().max() > 1e-3
        assert not torch.allclose(after[f"features.{index}.running_var"], torch.ones_like(after[f"features.{index}.running_var"]))
        assert after[f"features.{index}.num_batches_tracked"] == 2
    again = tiny_cnn()
    realistic_init(again, 7, settings, batches=2, batch_size=4)
    assert all(torch.equal(after[name], again.state_dict()[name]) for name in after)
    assert not module.training  # left in eval mode

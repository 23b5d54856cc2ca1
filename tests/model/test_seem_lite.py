"""seem-lite: packaged backbone and sentence encoder, shipped trained parts, offline."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_seem.model.build import build_seem, get_config  # noqa: E402
from napari_seem.model.efficientnet_lite import (  # noqa: E402
    EfficientNetLite,
    load_efficientnet_lite_weights,
)
from napari_seem.model.lite_weights import shipped_lite_weights, trained_keys  # noqa: E402


@pytest.fixture(scope="module")
def lite():  # type: ignore[no-untyped-def]
    if shipped_lite_weights() is None:
        pytest.skip("seem-lite weights are not shipped in this checkout")
    return build_seem("seem-lite")


def test_efficientnet_lite0_loads_imagenet_weights_strictly_and_has_the_strides() -> None:
    net = EfficientNetLite()
    assert load_efficientnet_lite_weights(net) == len(net.state_dict())
    feats = net(torch.zeros(1, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "res2": (1, 24, 16, 24),
        "res3": (1, 40, 8, 12),
        "res4": (1, 112, 4, 6),
        "res5": (1, 320, 2, 3),
    }
    net.train()
    assert not net.training  # frozen batch norms stay in inference mode


def test_efficientnet_lite0_classifies_an_espresso() -> None:
    """The ImageNet head on top of our backbone names skimage's coffee cup (class 967)."""
    import torch.nn.functional as F
    from skimage import data, transform

    from napari_seem.model.efficientnet_lite import efficientnet_lite0_weights_path

    net = EfficientNetLite()
    load_efficientnet_lite_weights(net)
    sd = torch.load(efficientnet_lite0_weights_path(), weights_only=True)
    img = transform.resize(data.coffee(), (224, 224), preserve_range=True).astype(np.float32)
    x = (torch.from_numpy(img).permute(2, 0, 1)[None] - 127.0) / 128.0
    with torch.no_grad():
        y = F.conv2d(net(x)["res5"], sd["_conv_head.weight"])
        y = F.batch_norm(
            y,
            sd["_bn1.running_mean"],
            sd["_bn1.running_var"],
            sd["_bn1.weight"],
            sd["_bn1.bias"],
            False,
            0.0,
            1e-3,
        )
        logits = F.relu6(y).mean((2, 3)) @ sd["_fc.weight"].t() + sd["_fc.bias"]
    assert int(logits.argmax()) == 967


def test_trained_keys_exclude_the_packaged_parts() -> None:
    model = build_seem("seem-lite", device="meta")
    keys = trained_keys(model)
    assert keys and not any(k.startswith("backbone.") for k in keys)
    assert "sem_seg_head.predictor.lang_encoder.lang_proj" in keys
    assert not any(".lang_encoder.encoder." in k for k in keys)
    assert get_config("seem-lite").decoder.hidden_dim == 128


def test_text_synonyms_land_close(lite) -> None:  # type: ignore[no-untyped-def]
    from napari_seem.predict.predictor import SeemPredictor

    predictor = SeemPredictor(lite)
    enc = lite.text_encoder
    with torch.no_grad():
        e = enc.sentence_embeddings(
            ["nuclei", "cell nucleus", "nucleus", "water", "forest"], predictor.tokenizer
        )
    sim = (e @ e.T).numpy()
    synonyms = [sim[0, 1], sim[0, 2], sim[1, 2]]
    unrelated = [sim[i, j] for i in range(3) for j in (3, 4)]
    assert min(synonyms) > 0.6
    assert min(synonyms) > max(unrelated) + 0.2


def test_shipped_weights_load_strictly_offline_and_answer_a_click(lite, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import socket

    from napari_seem import ObjectPrompt, Points
    from napari_seem.datasets.synthetic import synthetic_nuclei
    from napari_seem.predict.predictor import SeemPredictor

    def no_network(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("seem-lite tried to use the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    model = build_seem("seem-lite")
    assert model.load_report is not None
    assert model.load_report.loaded == len(trained_keys(model))
    scene = synthetic_nuclei((256, 256), n_objects=8, seed=4)
    predictor = SeemPredictor(model)
    predictor.set_image(scene.image)
    assert predictor.encoded.frame.padded_hw == (1024, 1024)  # short side 1024
    rows, cols = np.nonzero(scene.labels == 1)
    r, c = int(np.median(rows)), int(np.median(cols))
    if scene.labels[r, c] != 1:
        r, c = int(rows[len(rows) // 2]), int(cols[len(cols) // 2])
    result = predictor.predict([ObjectPrompt((Points.click(r, c),))])
    mask = result.objects[0].full(scene.labels.shape)
    truth = scene.labels == 1
    # the clicked nucleus, not its lookalikes (full quality numbers: the model card)
    assert mask[r, c]
    assert (mask & truth).sum() / (mask | truth).sum() >= 0.7


def test_shipped_weights_find_the_nuclei_of_a_synthetic_image(lite) -> None:  # type: ignore[no-untyped-def]
    from napari_seem.datasets.synthetic import synthetic_nuclei
    from napari_seem.evaluation.heldout import everything_f1
    from napari_seem.predict.predictor import SeemPredictor

    if shipped_lite_weights() is None:
        pytest.skip("seem-lite weights are not shipped in this checkout")
    scene = synthetic_nuclei((384, 512), n_objects=40, seed=11)
    f1 = everything_f1(SeemPredictor(build_seem("seem-lite")), scene.image, scene.labels)
    assert f1.f1 >= 0.7, f1


def test_default_variant_is_seem_lite_when_shipped() -> None:
    from napari_seem.core.variants import DEFAULT_VARIANT, VARIANT_SUMMARIES

    assert "seem-lite" in VARIANT_SUMMARIES
    if shipped_lite_weights() is not None:
        assert DEFAULT_VARIANT == "seem-lite"

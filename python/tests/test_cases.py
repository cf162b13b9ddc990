"""Cases from an image and a prompt, on the tiny VLMs' real vision towers (CLIP for LLaVA,
Qwen2.5-VL's own): the case reproduces what the model does with the image and the prompt,
and the path image → case → Swift trace → diff holds."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import GOLDEN, REPO, run

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import CLIPImageProcessorPil, LlavaForConditionalGeneration, PreTrainedTokenizerFast  # noqa: E402
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil  # noqa: E402

from reroute_trace import Recorder, build_case, greedy_decode, model_inputs, read_case, write_case, write_trace  # noqa: E402


def word_tokenizer(special: dict[str, int]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the tiny models' 256 ids: w0 … w247, <unk>, and `special`."""
    vocab = {f"w{i}": i for i in range(248)} | {"<unk>": 248} | special
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", additional_special_tokens=list(special))


def picture(h: int, w: int) -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def llava():
    model = LlavaForConditionalGeneration.from_pretrained(str(GOLDEN / "models/tiny-llama"), dtype=torch.float32,
                                                          attn_implementation="eager").eval()
    ip = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    return model, ip, word_tokenizer({"<image>": model.config.image_token_index})


@pytest.fixture(scope="module")
def qwen():
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(GOLDEN / "models/tiny-qwen2-vl"), dtype=torch.float32,
                                                                attn_implementation="eager").eval()
    # The tiny model's special ids are Qwen's (151652…), outside its 256-token vocabulary; the
    # test's tokenizer gives them ids inside it, and the model is told so (in memory only).
    special = {"<|vision_start|>": 251, "<|vision_end|>": 252, "<|image_pad|>": 253, "<|video_pad|>": 254}
    for c in {id(model.config): model.config, id(model.model.config): model.model.config}.values():
        c.vision_start_token_id, c.vision_end_token_id, c.image_token_id, c.video_token_id = 251, 252, 253, 254
    ip = Qwen2VLImageProcessorPil(patch_size=2, merge_size=2, temporal_patch_size=2, min_pixels=16, max_pixels=1024)
    return model, ip, word_tokenizer(special)


def test_a_llava_case_is_what_the_model_does_with_the_image_and_prompt(llava):
    model, ip, tok = llava
    case = build_case(model, picture(40, 40), "w1 w7 w3 <image> w9 w12 w4", image_processor=ip, tokenizer=tok)
    assert case["grid"].tolist() == [2, 2] and case["visual_embeddings"].shape == (4, 64)
    assert case["prefix_ids"].tolist() == [1, 7, 3] and case["suffix_ids"].tolist() == [9, 12, 4]
    assert case["positions"].tolist() == [list(range(10))]
    ids = tok("w1 w7 w3 " + "<image>" * 4 + " w9 w12 w4", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        own = model(input_ids=ids, pixel_values=ip(images=picture(40, 40), return_tensors="pt")["pixel_values"]).logits
        ours = model(**model_inputs(model, case)).logits
    assert torch.equal(own, ours)


def test_a_qwen_case_has_the_models_own_mrope_positions(qwen):
    model, ip, tok = qwen
    prompt = "w5 w6 <|vision_start|><|image_pad|><|vision_end|> w8 w9"
    case = build_case(model, picture(12, 16), prompt, image_processor=ip, tokenizer=tok)
    assert case["grid"].tolist() == [3, 4] and case["visual_embeddings"].shape == (12, 48)
    assert case["prefix_ids"].tolist() == [5, 6, 251] and case["suffix_ids"].tolist() == [252, 8, 9]
    P, rows, cols = 3, 3, 4  # SPEC.md §4's closed form of get_rope_index for one image
    r, c = np.divmod(np.arange(rows * cols), cols)
    visual = np.stack([np.full(12, P), P + r, P + c])
    after = P + max(rows, cols) + np.arange(3)
    expected = np.concatenate([np.tile(np.arange(P), (3, 1)), visual, np.tile(after, (3, 1))], axis=1)
    assert np.array_equal(case["positions"], expected)
    px = ip(images=picture(12, 16), return_tensors="pt")
    ids = tok(prompt.replace("<|image_pad|>", "<|image_pad|>" * 12), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        own = model(input_ids=ids, pixel_values=px["pixel_values"], image_grid_thw=px["image_grid_thw"],
                    mm_token_type_ids=(ids == 253).int()).logits
        ours = model(**model_inputs(model, case)).logits
    assert torch.allclose(own, ours, rtol=0, atol=1e-6), float((own - ours).abs().max())


def test_prompts_without_one_placeholder_or_text_after_it_are_refused(llava):
    model, ip, tok = llava
    with pytest.raises(ValueError, match="must hold the image placeholder '<image>' once, found 0"):
        build_case(model, picture(28, 28), "w1 w2", image_processor=ip, tokenizer=tok)
    with pytest.raises(ValueError, match="needs text after the image"):
        build_case(model, picture(28, 28), "w1 <image>", image_processor=ip, tokenizer=tok)


@pytest.mark.parametrize("which", ["llava", "qwen"])
def test_image_to_case_to_swift_trace_to_diff(which, llava, qwen, tmp_path, reroute):
    model, ip, tok = llava if which == "llava" else qwen
    folder = GOLDEN / "models" / ("tiny-llama" if which == "llava" else "tiny-qwen2-vl")
    prompt = "w1 w7 w3 <image> w9 w12 w4" if which == "llava" else "w5 w6 <|vision_start|><|image_pad|><|vision_end|> w8 w9"
    case = build_case(model, picture(40, 40) if which == "llava" else picture(12, 16), prompt, image_processor=ip, tokenizer=tok)
    path = tmp_path / "case.h5"
    write_case(str(path), case, case_name="picture", model_name=folder.name)
    assert sorted(read_case(str(path))) == sorted(case)
    swift = tmp_path / "swift-dense.h5"
    r = run(reroute, "run", "--model", str(folder), "--case", str(path), "--policy", "dense", "--out", str(swift))
    assert r.returncode == 0, r.stderr
    policy = run(reroute, "policy", "show", "dense", "--json").stdout
    with torch.no_grad(), Recorder(model, read_case(str(path)), policy, model_name=folder.name, case_name="picture") as rec:
        greedy_decode(model, case, model(**model_inputs(model, case), use_cache=True))
    recorded = tmp_path / "recorded.h5"
    write_trace(str(recorded), rec.trace())
    d = run(reroute, "diff", str(swift), str(recorded))
    assert d.returncode == 0, d.stdout[-3000:]
    if which == "llava":  # the outside FastV on the image's case makes the reference's decision
        fastv = tmp_path / "swift-fastv.h5"
        assert run(reroute, "run", "--model", str(folder), "--case", str(path), "--policy", "fastv-release-64",
                   "--out", str(fastv)).returncode == 0
        out = tmp_path / "outside.h5"
        p = subprocess.run([sys.executable, str(REPO / "python/examples/record.py"), "--model", str(folder), "--case", str(path),
                            "--policy", "fastv-release-64", "--reroute", reroute, "--out", str(out)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr[-2000:]
        d = run(reroute, "diff", str(fastv), str(out))
        assert d.returncode == 0, d.stdout[-3000:]


def test_llava_vision_side_inputs_are_clips_own_and_run_nuwa(llava, tmp_path, reroute):
    model, ip, tok = llava
    model.model.vision_tower.config._attn_implementation = "eager"  # attention weights are returned by eager attention only
    # The tiny CLIP has one layer: its attention, and the mean of its two hidden-state entries.
    case = build_case(model, picture(40, 40), "w1 w7 w3 <image> w9 w12 w4", image_processor=ip, tokenizer=tok,
                      vision_side=True, cls_attention_layer=0, similarity_layers=[0, 1])
    cls, sim = case["vision_side/cls_attention"], case["vision_side/similarity_features"]
    assert cls.shape == (4,) and sim.shape == (4, 48) and case["visual_features"].shape == (4, 48)
    assert "visual_embeddings" not in case
    # Recomputed by hand from the layer's weights: softmax(q_cls · k / sqrt(d_h)) over CLS and patches, summed over heads.
    tower = model.model.vision_tower
    with torch.no_grad():
        pixels = ip(images=picture(40, 40), return_tensors="pt")["pixel_values"]
        h0 = tower.pre_layrnorm(tower.embeddings(pixels))[0]
        layer = tower.encoder.layers[0]
        x = layer.layer_norm1(h0)
        heads = layer.self_attn.num_heads
        q = layer.self_attn.q_proj(x).view(-1, heads, 48 // heads).transpose(0, 1)
        k = layer.self_attn.k_proj(x).view(-1, heads, 48 // heads).transpose(0, 1)
        w = torch.softmax(q[:, :1] @ k.transpose(1, 2) / (48 // heads) ** 0.5, dim=-1)[:, 0, 1:].sum(dim=0)
        h1 = layer(h0[None], None)
        h1 = h1[0] if isinstance(h1, tuple) else h1
    assert np.allclose(cls, w.numpy(), rtol=0, atol=1e-6)
    assert np.allclose(sim, ((h0[1:] + h1.reshape(-1, 48)[1:]) / 2).numpy(), rtol=0, atol=1e-6)
    path = tmp_path / "case.h5"
    write_case(str(path), case, case_name="picture", model_name="tiny-llama")
    r = run(reroute, "run", "--model", str(GOLDEN / "models/tiny-llama"), "--case", str(path), "--policy", "nuwa-64",
            "--out", str(tmp_path / "nuwa.h5"))
    assert r.returncode == 0, r.stderr
    # The features through the suite's projector are the model's own embeddings of the image.
    plain = build_case(model, picture(40, 40), "w1 w7 w3 <image> w9 w12 w4", image_processor=ip, tokenizer=tok)
    with torch.no_grad():
        projected = model.model.multi_modal_projector(torch.from_numpy(case["visual_features"])).numpy()
    assert np.array_equal(projected, plain["visual_embeddings"])
    write_case(str(tmp_path / "plain.h5"), plain, case_name="picture")
    dense = [tmp_path / "features.h5", tmp_path / "embeddings.h5"]
    for c, out in zip([path, tmp_path / "plain.h5"], dense):
        assert run(reroute, "run", "--model", str(GOLDEN / "models/tiny-llama"), "--case", str(c), "--policy", "dense",
                   "--out", str(out)).returncode == 0
    # Features through the suite's float64 projector, or the model's float32 embeddings: the same run within float32 rounding.
    d = run(reroute, "diff", "--preset", "fp32", str(dense[1]), str(dense[0]))  # the embeddings were projected in float32
    # Only the inputs differ (features against embeddings); every layer, logit and token agrees.
    assert d.returncode == 1 and "1 differ" in d.stdout and "first divergence: /inputs/visual" in d.stdout, d.stdout[-2000:]


def test_llava_visionzip_inputs_are_clips_own_keys_and_cls_and_run(llava, tmp_path, reroute):
    model, ip, tok = llava
    model.model.vision_tower.config._attn_implementation = "eager"
    case = build_case(model, picture(40, 40), "w1 w7 w3 <image> w9 w12 w4", image_processor=ip, tokenizer=tok,
                      vision_side="visionzip", cls_attention_layer=0)
    nuwa = build_case(model, picture(40, 40), "w1 w7 w3 <image> w9 w12 w4", image_processor=ip, tokenizer=tok,
                      vision_side=True, cls_attention_layer=0, similarity_layers=[0, 1])
    assert np.array_equal(case["vision_side/cls_attention"], nuwa["vision_side/cls_attention"])
    # Recomputed by hand: layer 0's keys of its input, averaged over heads, patches only; the CLS
    # token of the features' layer.
    tower = model.model.vision_tower
    with torch.no_grad():
        pixels = ip(images=picture(40, 40), return_tensors="pt")["pixel_values"]
        h0 = tower.pre_layrnorm(tower.embeddings(pixels))[0]
        layer = tower.encoder.layers[0]
        heads = layer.self_attn.num_heads
        k = layer.self_attn.k_proj(layer.layer_norm1(h0)).view(-1, heads, 48 // heads).mean(dim=1)[1:]
        hs = tower(pixels, output_hidden_states=True).hidden_states
    assert case["vision_side/similarity_features"].shape == (4, 48 // heads)
    assert np.allclose(case["vision_side/similarity_features"], k.numpy(), rtol=0, atol=1e-6)
    assert np.array_equal(case["vision_side/cls_feature"], hs[model.config.vision_feature_layer][0, 0].numpy())
    with pytest.raises(ValueError, match="vision_side must be"):
        build_case(model, picture(40, 40), "w1 <image> w2", image_processor=ip, tokenizer=tok, vision_side="tome")
    path = tmp_path / "case.h5"
    write_case(str(path), case, case_name="picture", model_name="tiny-llama")
    # 4 patches: the CLS token and 1 dominant patch, 1 contextual target that the other 2 join.
    policy = tmp_path / "vz.json"
    shown = run(reroute, "policy", "show", "visionzip-64", "--json")
    assert shown.returncode == 0, shown.stderr
    import json
    doc = json.loads(shown.stdout)
    doc["vision_stage"] |= {"dominant_ratio": 0.5, "contextual_ratio": 0.25}
    doc["name"] = "vz-half"
    policy.write_text(json.dumps(doc))
    out = tmp_path / "vz.h5"
    r = run(reroute, "run", "--model", str(GOLDEN / "models/tiny-llama"), "--case", str(path), "--policy-file", str(policy),
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    import h5py
    with h5py.File(out, "r") as f:
        cells = f["/llm/visual_grid_indices"][()].tolist()
        top = int(np.argmax(case["vision_side/cls_attention"]))
        assert cells[:2] == [4, top] and len(cells) == 3, cells
        pos = np.asarray(f["/prefill/positions"][0]).reshape(-1)
        assert np.array_equal(pos, np.arange(pos.size)) and pos.size == len(case["prefix_ids"]) + 3 + len(case["suffix_ids"])
    c = run(reroute, "conform", "--trace", str(out))
    assert c.returncode == 0, c.stdout[-2000:]

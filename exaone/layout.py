"""EXAONE 3.x's hub layout and the Llama layout: tensor names, config keys and shapes, both ways.

EXAONE 3.0 and 3.5 are the Llama architecture under other names (pre-norm RMSNorm blocks, rotate-half
RoPE, grouped-query attention, ``c_proj(silu(c_fc_0 x) * c_fc_1 x)``, no biases), so the two layouts
differ only in names: no tensor is transposed, permuted or changed. This module is that mapping, the
shapes a config implies, and :func:`exaone3_problem`, which tells whether a checkpoint still needs
``tools convert-exaone``. It works on parsed configs only; files are :mod:`common.checkpoint_files`' and
:mod:`exaone.convert`'s business.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from common.errors import UserError

EXAONE, LLAMA = "exaone", "llama"
LAYOUTS = (LLAMA, EXAONE)

# Whole-model tensors, EXAONE name → Llama name. lm_head is absent when the embeddings are tied.
GLOBAL_NAMES = {
    "transformer.wte.weight": "model.embed_tokens.weight",
    "transformer.ln_f.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
# Per-layer tensors under ``transformer.h.N.`` → ``model.layers.N.``.
LAYER_NAMES = {
    "ln_1.weight": "input_layernorm.weight",
    "attn.attention.q_proj.weight": "self_attn.q_proj.weight",
    "attn.attention.k_proj.weight": "self_attn.k_proj.weight",
    "attn.attention.v_proj.weight": "self_attn.v_proj.weight",
    "attn.attention.out_proj.weight": "self_attn.o_proj.weight",
    "ln_2.weight": "post_attention_layernorm.weight",
    "mlp.c_fc_0.weight": "mlp.gate_proj.weight",  # the projection under SiLU
    "mlp.c_fc_1.weight": "mlp.up_proj.weight",
    "mlp.c_proj.weight": "mlp.down_proj.weight",
}
LAYER_PREFIX = {EXAONE: "transformer.h.", LLAMA: "model.layers."}

# Config keys that only change name; every other key keeps its name and value.
CONFIG_RENAMES = {
    "num_layers": "num_hidden_layers",
    "activation_function": "hidden_act",
    "layer_norm_epsilon": "rms_norm_eps",
}
# What the hub config.json of EXAONE 3.x points its remote code at; dropped in the Llama layout.
EXAONE_AUTO_MAP = {
    "AutoConfig": "configuration_exaone.ExaoneConfig",
    "AutoModelForCausalLM": "modeling_exaone.ExaoneForCausalLM",
    "AutoModelForSequenceClassification": "modeling_exaone.ExaoneForSequenceClassification",
}
# Llama keys EXAONE 3.x has no counterpart for: converting back is exact only at these values.
LLAMA_ONLY = {"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1}
ARCHITECTURES = {EXAONE: ["ExaoneForCausalLM"], LLAMA: ["LlamaForCausalLM"]}


def model_type_problem(config: dict[str, Any], layout: str, where: str) -> str | None:
    """Why ``config`` is not a checkpoint in ``layout`` (``None`` when it is), in one line."""
    model_type = config.get("model_type")
    if model_type == layout:
        return None
    if layout == EXAONE and model_type in ("exaone4", "exaone4_5", "exaone_moe"):
        return (f"{where}: model_type {model_type} is EXAONE 4.x, which transformers runs natively "
                "(no remote code): it needs no conversion, use it as it is")
    if layout == EXAONE and model_type == LLAMA:
        return f"{where}: already in the Llama layout (model_type llama); nothing to convert"
    if layout == LLAMA and model_type == EXAONE:
        return f"{where}: already in EXAONE 3.x's own layout (model_type exaone); nothing to convert"
    wanted = "EXAONE 3.x config (model_type exaone)" if layout == EXAONE else "Llama-layout config (model_type llama)"
    return f"{where}: not an {wanted}: model_type is {model_type!r}"


def to_llama_config(config: dict[str, Any], *, tied: bool, where: str) -> dict[str, Any]:
    """EXAONE 3.x ``config.json`` → Llama ``config.json`` (``tied``: whether the checkpoint has no lm_head)."""
    if problem := model_type_problem(config, EXAONE, where):
        raise UserError(problem)
    if config.get("embed_dropout", 0.0):
        raise UserError(f"{where}: embed_dropout {config['embed_dropout']}: the Llama layout has no embedding "
                        "dropout (the released EXAONE 3.x models use 0.0)")
    out = {CONFIG_RENAMES.get(key, key): value for key, value in config.items()
           if key not in ("auto_map", "embed_dropout")}
    # Written explicitly: some loaders default it to true for this model type.
    out["tie_word_embeddings"] = bool(config.get("tie_word_embeddings", tied))
    return {**out, "architectures": ARCHITECTURES[LLAMA], "model_type": LLAMA}


def to_exaone_config(config: dict[str, Any], *, where: str) -> dict[str, Any]:
    """Llama ``config.json`` → EXAONE 3.x ``config.json`` (the inverse of :func:`to_llama_config`)."""
    if problem := model_type_problem(config, LLAMA, where):
        raise UserError(problem)
    config = dict(config)
    for key, value in LLAMA_ONLY.items():
        if (found := config.pop(key, value)) != value:
            raise UserError(f"{where}: {key} {found!r}: EXAONE 3.x has no such option (only {value!r} converts)")
    if "rope_parameters" in config:  # written by transformers ≥ 5 (e.g. after `axolotl merge-lora`)
        rope = dict(config.pop("rope_parameters") or {})
        config.setdefault("rope_theta", rope.pop("rope_theta", None))
        config.setdefault("rope_scaling", rope if rope.get("rope_type", "default") != "default" else None)
    if "dtype" in config:
        config.setdefault("torch_dtype", config.pop("dtype"))
    inverse = {llama: exaone for exaone, llama in CONFIG_RENAMES.items()}
    out = {inverse.get(key, key): value for key, value in config.items()}
    out.setdefault("tie_word_embeddings", False)
    out.setdefault("embed_dropout", 0.0)
    return {**out, "architectures": ARCHITECTURES[EXAONE], "model_type": EXAONE, "auto_map": EXAONE_AUTO_MAP}


def tensor_shapes(config: dict[str, Any], *, tied: bool, where: str) -> dict[str, list[int]]:
    """Every tensor an EXAONE 3.x checkpoint with ``config`` holds, EXAONE name → shape."""
    try:
        hidden, vocab = int(config["hidden_size"]), int(config["vocab_size"])
        heads, layers = int(config["num_attention_heads"]), int(config["num_layers"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or (hidden // heads if heads > 0 else 0))
        inter = int(config["intermediate_size"])
    except KeyError as missing:
        raise UserError(f"{where}: config.json has no {missing.args[0]!r}") from None
    except (TypeError, ValueError) as error:
        raise UserError(f"{where}: config.json has a malformed size ({error})") from None
    sizes = {"hidden_size": hidden, "vocab_size": vocab, "num_attention_heads": heads, "num_layers": layers,
             "num_key_value_heads": kv_heads, "head_dim": head_dim, "intermediate_size": inter}
    if bad := next((key for key, value in sizes.items() if value <= 0), None):
        raise UserError(f"{where}: config.json has {bad} {sizes[bad]}; it must be a positive number")
    layer = {
        "ln_1.weight": [hidden],
        "attn.attention.q_proj.weight": [heads * head_dim, hidden],
        "attn.attention.k_proj.weight": [kv_heads * head_dim, hidden],
        "attn.attention.v_proj.weight": [kv_heads * head_dim, hidden],
        "attn.attention.out_proj.weight": [hidden, heads * head_dim],
        "ln_2.weight": [hidden],
        "mlp.c_fc_0.weight": [inter, hidden],
        "mlp.c_fc_1.weight": [inter, hidden],
        "mlp.c_proj.weight": [hidden, inter],
    }
    shapes = {"transformer.wte.weight": [vocab, hidden]}
    for index in range(layers):
        shapes.update({f"{LAYER_PREFIX[EXAONE]}{index}.{name}": shape for name, shape in layer.items()})
    shapes["transformer.ln_f.weight"] = [hidden]
    if not tied:
        shapes["lm_head.weight"] = [vocab, hidden]
    return shapes


_LAYER_NAME = re.compile(r"^(\d+)\.(.+)$")


def rename(name: str, source: str) -> str | None:
    """``name`` in the other layout (``source`` is the layout it is in); ``None`` for a name neither has."""
    target = LLAMA if source == EXAONE else EXAONE
    table = GLOBAL_NAMES if source == EXAONE else {llama: exaone for exaone, llama in GLOBAL_NAMES.items()}
    if name in table:
        return table[name]
    prefix = LAYER_PREFIX[source]
    match = _LAYER_NAME.match(name[len(prefix):]) if name.startswith(prefix) else None
    if not match:
        return None
    layer = LAYER_NAMES if source == EXAONE else {llama: exaone for exaone, llama in LAYER_NAMES.items()}
    inner = layer.get(match.group(2))
    return f"{LAYER_PREFIX[target]}{match.group(1)}.{inner}" if inner else None


def exaone3_problem(model: str | Path, config: dict[str, Any] | None) -> str | None:
    """One line when ``model`` (local dir or hub id), whose ``config.json`` is ``config`` (``None``: unknown, e.g.
    a hub id offline), is an unconverted EXAONE 3.x checkpoint, else ``None``.

    Its hub code was written for transformers 4.x and fails on the transformers this project runs; the
    same weights in the Llama layout run natively.
    """
    if not isinstance(config, dict) or config.get("model_type") != EXAONE:
        return None
    return (f"{model} is an EXAONE 3.x checkpoint in its hub layout, whose remote code does not run on this "
            f"transformers; convert it once with `tools convert-exaone --model {model} --output-dir DIR` "
            "and use DIR instead")

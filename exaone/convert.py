"""Convert an EXAONE 3.x checkpoint to the Llama layout (and back), streamed, never the whole model in memory.

The two layouts differ only in tensor names and config keys (:mod:`exaone.layout`), so each output
shard is its input shard with a rewritten safetensors header: the tensor bytes are copied through a
16 MiB buffer without being decoded. Memory stays flat whatever the model size, the copy runs at disk
speed, and the result is bit-identical by construction. Before a byte is written every shard header is
checked against the config (names, shapes, dtypes and byte sizes, nothing missing); each written shard is
re-opened with ``safetensors.safe_open`` as a check of the writer. The output is built in a hidden sibling
directory (``.NAME.partial-PID``) that is renamed into place at the end, so an interrupted run leaves no
half-written checkpoint; one left by ``kill -9`` is removed by the next run on the same output (and a
previous output moved aside as ``.NAME.old-PID`` is put back if the kill came between the two renames).
An ``--output-dir`` that is a symlink is written through: the folder it points to is replaced, the link stays.
A full, read-only or forbidden disk is one line (:func:`common.files.cannot_write`).

Also written: ``config.json`` in the target layout, a ``generation_config.json`` that stops at
``[|endofturn|]``, and the tokenizer files unchanged (byte-level BPE with the chat template inside,
loadable by ``AutoTokenizer`` without ``trust_remote_code``).
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from common.checkpoint_files import (
    CONFIG,
    GENERATION_CONFIG,
    SAFETENSORS,
    SAFETENSORS_INDEX,
    TOKENIZER_CONFIG,
    TOKENIZER_FILES,
    TOKENIZER_JSON,
    hub_errors,
    read_config,
    write_checkpoint_json,
)
from common.errors import UserError
from common.files import WRITE_ERRORS, cannot_write, clear_leftovers, dead_leftovers, leftover_name
from common.io import refuse_overlapping_folders
from common.paths import looks_like_local_path
from exaone.layout import (
    EXAONE,
    LLAMA,
    LAYOUTS,
    model_type_problem,
    rename,
    tensor_shapes,
    to_exaone_config,
    to_llama_config,
)

# What a hub download fetches: config, weights and tokenizer; never the repo's Python code.
HUB_PATTERNS = [CONFIG, SAFETENSORS_INDEX, "*.safetensors", *TOKENIZER_FILES]
ENDOFTURN = "[|endofturn|]"
COPY_BUFFER = 16 * 2**20
MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


@dataclass(frozen=True)
class Shard:
    """One safetensors file as its header describes it (nothing of the data is read)."""

    path: Path
    header_size: int               # bytes of the JSON header after the 8-byte length
    tensors: dict[str, dict]       # name → {"dtype", "shape", "data_offsets"}
    metadata: dict[str, str] | None
    data_size: int                 # bytes after the header: the tensors' buffer

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert` wrote."""

    output: Path
    layout: str
    tensors: int
    shards: int
    size_bytes: int


def convert(model: str | Path, output: str | Path, *, to: str = LLAMA, revision: str | None = None,
            force: bool = False, progress: bool = True) -> Conversion:
    """Convert ``model`` (a local directory or a hub id) to layout ``to`` in directory ``output``.

    ``to="llama"`` takes an EXAONE 3.x checkpoint (``model_type: exaone``); ``to="exaone"`` the reverse.
    A non-empty ``output`` is replaced only with ``force``. Every problem is a one-line :class:`UserError`.
    """
    if to not in LAYOUTS:
        raise UserError(f"--to {to}: choose from {', '.join(LAYOUTS)}")
    source_layout = EXAONE if to == LLAMA else LLAMA
    output = Path(output).expanduser().absolute()
    if output.is_symlink():  # written through: the folder it points to is replaced, the link stays
        output = Path(os.path.realpath(output))
    recover_staging(output)
    check_output(output, force)
    source = fetch(model, revision)
    refuse_overlapping_folders({"--output-dir": output}, {"--model": source})  # the output replaces its folder
    config = read_config(source)
    if problem := model_type_problem(config, source_layout, str(model)):
        raise UserError(problem)
    shards = read_shards(source)
    names = {name for shard in shards for name in shard.tensors}
    if to == LLAMA:
        tied = bool(config.get("tie_word_embeddings", "lm_head.weight" not in names))
        exaone_config = config
        new_config = to_llama_config(config, tied=tied, where=str(model))
    else:
        new_config = exaone_config = to_exaone_config(config, where=str(model))
        tied = bool(new_config["tie_word_embeddings"])
    renamed = plan(shards, tensor_shapes(exaone_config, tied=tied, where=str(model)), source_layout, source)

    try:
        write_checkpoint(source, output, shards, renamed, new_config, progress)
    except OSError as error:
        if error.errno in WRITE_ERRORS:
            raise cannot_write(output, error) from None
        raise UserError(f"converting {model}: {error.strerror or error}"
                        + (f" ({error.filename})" if error.filename else "")) from None
    return Conversion(output, to, len(renamed), len(shards), sum(shard.data_size for shard in shards))


def write_checkpoint(source: Path, output: Path, shards: list[Shard], renamed: dict[str, str],
                     new_config: dict[str, Any], progress: bool) -> None:
    """The converted shards, index, configs and tokenizer files, built beside ``output`` and renamed to it."""
    with staged_directory(output) as staging:
        for number, shard in enumerate(shards, 1):
            write_shard(shard, staging / shard.name, renamed,
                        label=f"{number}/{len(shards)} {shard.name}" if progress else None)
        if (source / SAFETENSORS_INDEX).is_file():
            index = json.loads((source / SAFETENSORS_INDEX).read_text(encoding="utf-8"))
            weight_map = {renamed[name]: shard.name for shard in shards for name in shard.tensors}
            write_checkpoint_json(staging / SAFETENSORS_INDEX, {"metadata": index.get("metadata", {}),
                                                         "weight_map": dict(sorted(weight_map.items()))})
        write_checkpoint_json(staging / CONFIG, new_config)
        write_checkpoint_json(staging / GENERATION_CONFIG, generation_config(new_config, source))
        for name in TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, staging / name)


def check_output(output: Path, force: bool) -> None:
    if output.exists() and not output.is_dir():
        raise UserError(f"--output-dir {output}: exists and is not a directory")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise UserError(f"--output-dir {output}: exists and is not empty; pass --force to replace it")


def fetch(model: str | Path, revision: str | None) -> Path:
    """The checkpoint directory: ``model`` itself, or a hub snapshot of its config, tokenizer and weights."""
    if looks_like_local_path(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise UserError(f"--model {model}: no such directory")
        if revision:
            raise UserError(f"--revision {revision}: only applies to a hub id, and {model} is a local directory")
        return path.resolve()
    from huggingface_hub import snapshot_download

    try:  # the token comes from HF_TOKEN or `huggingface-cli login`, as for every hub download
        return Path(snapshot_download(str(model), revision=revision, allow_patterns=HUB_PATTERNS))
    except hub_errors() as error:  # offline, gated, no such repo or revision: all fixable by the user
        raise UserError(f"cannot download {model}{'@' + revision if revision else ''} from the hub: "
                        f"{type(error).__name__}: {error}") from None


def read_shards(source: Path) -> list[Shard]:
    """The checkpoint's safetensors files (from the index, or the single file), headers read and checked."""
    if (source / SAFETENSORS_INDEX).is_file():
        try:
            weight_map = json.loads((source / SAFETENSORS_INDEX).read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise UserError(f"{source / SAFETENSORS_INDEX}: not a safetensors index ({error!r})") from None
        for name in files:
            if not (source / name).is_file():
                raise UserError(f"{source}: missing shard {name} (listed in {SAFETENSORS_INDEX})")
    elif (source / SAFETENSORS).is_file():
        files = [SAFETENSORS]
    else:
        raise UserError(f"{source}: no {SAFETENSORS} or {SAFETENSORS_INDEX} "
                        "(only safetensors checkpoints are converted)")
    return [read_shard(source / name) for name in files]


# Bits per element of every safetensors dtype.
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
              "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
              "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
CORRUPT = "the file is damaged: download the checkpoint again"


def read_shard(path: Path) -> Shard:
    """Parse a safetensors header: 8 bytes little-endian length, then that many bytes of JSON, every tensor
    entry checked (dtype, shape, two offsets inside the file spanning exactly the bytes dtype and shape
    need) — one line naming the file and tensor when anything is off."""
    size = path.stat().st_size
    with path.open("rb") as file:
        length = int.from_bytes(file.read(8), "little") if size >= 8 else -1
        if not 0 < length <= min(MAX_HEADER, size - 8):
            raise UserError(f"{path}: not a safetensors file (bad header length; {CORRUPT})")
        try:
            header = json.loads(file.read(length))
        except ValueError:
            raise UserError(f"{path}: not a safetensors file (header is not JSON; {CORRUPT})") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: not a safetensors file (header is a JSON {type(header).__name__}, not an object; "
                        f"{CORRUPT})")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(isinstance(value, str) for value in metadata.values())):
        raise UserError(f"{path}: __metadata__ must be an object of strings ({CORRUPT})")
    data_size = size - 8 - length
    for name, entry in header.items():
        if problem := tensor_entry_problem(entry, data_size):
            raise UserError(f"{path}: tensor {name}: {problem} ({CORRUPT})")
    return Shard(path, length, header, metadata, data_size)


def tensor_entry_problem(entry: Any, data_size: int) -> str | None:
    """What is wrong with one tensor's header entry, or ``None``."""
    if not isinstance(entry, dict):
        return f"its entry is a JSON {type(entry).__name__}, not an object"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BITS:
        return f"unknown dtype {dtype!r}"
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                              for n in shape):
        return f"shape {shape!r} is not a list of sizes" if "shape" in entry else "no shape"
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in offsets)):
        return f"data_offsets {offsets!r} is not two byte offsets"
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        return f"data_offsets {offsets} lie outside the file's {data_size} data bytes"
    elements = 1
    for n in shape:
        elements *= n
    if (end - begin) * 8 != elements * DTYPE_BITS[dtype]:
        return f"dtype {dtype} and shape {shape} need {elements * DTYPE_BITS[dtype] / 8:g} bytes, its offsets span {end - begin}"
    return None


def plan(shards: list[Shard], expected: dict[str, list[int]], source_layout: str, source: Path) -> dict[str, str]:
    """Source name → target name for every tensor, after checking names and shapes against the config."""
    renamed: dict[str, str] = {}
    found: set[str] = set()
    for shard in shards:
        for name, entry in sorted(shard.tensors.items()):
            exaone_name = name if source_layout == EXAONE else rename(name, LLAMA)
            if exaone_name not in expected:
                raise UserError(f"{shard.path}: unexpected tensor {name} (not in an EXAONE 3.x checkpoint with "
                                "this config.json)")
            if list(entry["shape"]) != expected[exaone_name]:
                raise UserError(f"{shard.path}: tensor {name} has shape {list(entry['shape'])}, but config.json "
                                f"implies {expected[exaone_name]}")
            if exaone_name in found:
                raise UserError(f"{shard.path}: tensor {name} appears in more than one shard")
            found.add(exaone_name)
            renamed[name] = rename(name, source_layout)
    missing = [name for name in expected if name not in found]
    if missing:
        shown = missing[0] if source_layout == EXAONE else rename(missing[0], EXAONE)
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UserError(f"{source}: missing tensor {shown}{more} (config.json implies it)")
    return renamed


def write_shard(shard: Shard, target: Path, renamed: dict[str, str], *, label: str | None) -> None:
    """``shard`` with its tensors renamed: a new header, then the tensor buffer copied byte for byte."""
    header: dict[str, Any] = {renamed[name]: entry for name, entry in shard.tensors.items()}
    if shard.metadata is not None:
        header["__metadata__"] = shard.metadata
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-(8 + len(blob)) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    buffer = memoryview(bytearray(COPY_BUFFER))
    with shard.path.open("rb") as source, target.open("wb") as out, progress_bar(shard.data_size, label) as bar:
        out.write(len(blob).to_bytes(8, "little"))
        out.write(blob)
        source.seek(8 + shard.header_size)
        remaining = shard.data_size
        while remaining:
            got = source.readinto(buffer[:min(remaining, COPY_BUFFER)])
            if not got:
                raise UserError(f"{shard.path}: ended early while copying (file changed during conversion?)")
            out.write(buffer[:got])
            remaining -= got
            bar.update(got)
    verify_shard(target, {renamed[name]: entry["shape"] for name, entry in shard.tensors.items()})


def verify_shard(path: Path, shapes: dict[str, list[int]]) -> None:
    """Re-open a written shard with safetensors itself (header only): same tensors, same shapes."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as written:
        got = {name: list(written.get_slice(name).get_shape()) for name in written.keys()}
    if got != shapes:  # pragma: no cover - a bug in write_shard, not a user error
        raise AssertionError(f"{path}: written shard does not hold the planned tensors")


def progress_bar(total: int, label: str | None):
    """A tqdm bar over ``total`` bytes (stderr); switched off when ``label`` is None."""
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, disable=label is None)


STAGING_KINDS = ("partial", "old")  # .NAME.partial-PID: being built; .NAME.old-PID: the output it replaces


def recover_staging(output: Path) -> None:
    """Undo what a killed run on ``output`` left: its previous output, moved aside just before the kill,
    comes back if nothing replaced it; every dead ``.NAME.partial-PID`` and ``.NAME.old-PID`` is removed."""
    for old in dead_leftovers(output, ("old",)):
        if not output.exists() and not output.is_symlink():
            old.rename(output)
    clear_leftovers(output, STAGING_KINDS)


@contextmanager
def staged_directory(output: Path) -> Iterator[Path]:
    """A fresh hidden sibling directory of ``output`` to write into; renamed to ``output`` (replacing it)
    when the block succeeds, removed when it fails. A symlinked ``output`` is replaced where it points.
    Leftovers of killed runs are cleared first (:func:`recover_staging`)."""
    if output.is_symlink():
        output = Path(os.path.realpath(output))
    output.parent.mkdir(parents=True, exist_ok=True)
    recover_staging(output)
    staging = leftover_name(output, "partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if output.exists():
        old = leftover_name(output, "old")
        output.rename(old)
        staging.rename(output)
        shutil.rmtree(old)
    else:
        staging.rename(output)


def generation_config(config: dict[str, Any], source: Path) -> dict[str, Any]:
    """Greedy-generation defaults that stop at ``[|endofturn|]`` (EXAONE ends every turn with it)."""
    eos = special_token_id(source, ENDOFTURN)
    settings = {"bos_token_id": config.get("bos_token_id"),
                "eos_token_id": eos if eos is not None else config.get("eos_token_id"),
                "pad_token_id": config.get("pad_token_id")}
    return {key: value for key, value in settings.items() if value is not None}


def special_token_id(source: Path, token: str) -> int | None:
    """The id of an added token, from ``tokenizer.json`` or ``tokenizer_config.json`` (``None`` if neither has it)."""
    try:
        for entry in json.loads((source / TOKENIZER_JSON).read_text(encoding="utf-8")).get("added_tokens", []):
            if entry.get("content") == token:
                return int(entry["id"])
    except (OSError, ValueError, AttributeError):
        pass
    try:
        config = json.loads((source / TOKENIZER_CONFIG).read_text(encoding="utf-8"))
        decoder = config.get("added_tokens_decoder", {})
        return next((int(key) for key, entry in decoder.items() if entry.get("content") == token), None)
    except (OSError, ValueError, AttributeError):
        return None

"""What makes training fast on this machine, and what a run used (config.json's "speed"):

- sampled softmax: the training step scores each target against a sample of the vocabulary
  (training.model.CharModel.sample_softmax); validation keeps the full softmax;
- bfloat16 mixed precision, where the hardware computes it natively (AVX-512 BF16 or AMX on a
  CPU, compute capability 8 or more on a GPU); elsewhere it would be emulated, slower. `auto`
  takes it only where it was measured faster: a GPU, AMX (a Xeon with AMX: 1.6x float32 per
  CPU-second on the tang/v3 shape), AVX-512 BF16 on AMD (Zen 4: 1.35x float32 on the Tang
  shape), not AVX-512 BF16 alone on Intel (a Xeon without AMX: 0.48x;
  benchmarks/results/train_options.md, train_options_amx.md and train_options_intel.md);
- XLA (`jit_compile`) for the training and validation steps.

benchmarks/train_throughput.py measures each on the Tang shape; the defaults are the winners.
"""

from __future__ import annotations

from pathlib import Path

PRECISIONS = ("auto", "float32", "bfloat16")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# Below this many characters the full softmax is cheap and the sample would be most of it.
MIN_SAMPLED_VOCAB_RATIO = 2


def _cpuinfo(field: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first CPU's `field` in /proc/cpuinfo ("" where it or the file is not there)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith(field):
            return line.partition(":")[2].strip()
    return ""


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is not there)."""
    return set(_cpuinfo("flags", cpuinfo).split())


def bf16_gpu() -> str | None:
    """The first GPU's name where it computes bfloat16 natively (compute capability 8+)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    major = (details.get("compute_capability") or (0, 0))[0]
    return details.get("device_name", "GPU") if major >= 8 else None


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's vendor_id ("GenuineIntel", "AuthenticAMD"), or "" where it is not said."""
    return _cpuinfo("vendor_id", cpuinfo)


def bf16_faster(hardware: str) -> bool:
    """Whether bfloat16 on `hardware` (bf16_hardware's answer) trained faster than float32
    where measured: not AVX-512 BF16 alone on an Intel CPU."""
    return not (hardware == "avx512_bf16" and cpu_vendor() == "GenuineIntel")


def bf16_hardware() -> str | None:
    """What computes bfloat16 natively here (a GPU's name or a CPU flag), or None."""
    flags = cpu_flags()
    return bf16_gpu() or next((flag for flag in BF16_CPU_FLAGS if flag in flags), None)


def resolve_precision(requested: str) -> tuple[str, str]:
    """(the Keras dtype policy, a sentence saying which and why) for --precision.

    bfloat16 asked for where the hardware lacks it is refused (emulated, it would be slower);
    auto takes bfloat16 where the hardware has it and float32 elsewhere, saying which."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    if requested == "float32":
        return "float32", "float32 (asked for)"
    hardware = bf16_hardware()
    if hardware and requested == "auto" and not bf16_faster(hardware):
        return "float32", (
            f"float32: {hardware} without AMX on an Intel CPU trained the Tang shape at 0.48x "
            "float32's speed in bfloat16 (--precision bfloat16 to use it anyway)"
        )
    if hardware:
        return "mixed_bfloat16", f"bfloat16 mixed precision ({hardware} computes it natively)"
    if requested == "bfloat16":
        raise ValueError(
            "--precision bfloat16: this machine has no native bfloat16 (no GPU of compute "
            f"capability 8+, no CPU flag {' or '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo), so "
            "it would be emulated and slower; use --precision auto or float32"
        )
    return "float32", (
        "float32: no native bfloat16 here (no CPU flag "
        f"{' or '.join(BF16_CPU_FLAGS)}, no GPU of compute capability 8+)"
    )


def sampled_size(requested: int, vocab_size: int) -> int:
    """Candidates per step for a --sampled-softmax request: 0 (the full softmax) where the
    vocabulary is too small for a sample to save anything."""
    if requested < 0:
        raise ValueError("--sampled-softmax must be 0 (full softmax) or a positive count")
    return requested if vocab_size >= MIN_SAMPLED_VOCAB_RATIO * requested else 0

"""Where training runs: one device (TensorFlow's default), every local GPU
(`tf.distribute.MirroredStrategy`, one replica per device, gradients all-reduced each step), or
several machines (`MultiWorkerMirroredStrategy`, configured by the TF_CONFIG variable)."""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi-worker")


def split_cpu(count: int) -> None:
    """Make the CPU `count` logical devices (before TensorFlow starts): a mirrored run on a
    machine without GPUs, for tests."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


def strategy(name: str) -> tf.distribute.Strategy:
    """The named strategy; mirrored over every GPU, else over the logical CPUs."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")

"""Packaging for edgekit.

``converters/`` installs as ``edgekit.converters`` and ``models/`` as ``edgekit.models``;
``device_bench`` is its own package (it runs on boards with only numpy + a TFLite interpreter).
"""

import re
from pathlib import Path

from setuptools import setup

# One version, kept in edgekit/__init__.py (importing edgekit here would need TensorFlow).
VERSION = re.search(r'^__version__ = "([^"]+)"', Path("edgekit/__init__.py").read_text(),
                    re.M).group(1)

# Pinned: the compression/conversion stack is version-sensitive (tfmot needs Keras 2 via tf-keras,
# and the converter's quantizer changes between TensorFlow releases).
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tensorflow-model-optimization==0.8.1",
    "ai-edge-litert==2.3.0",
    "numpy==2.4.6",
    "fire==0.7.1",
    # digits ships inside scikit-learn: the embedded real dataset; also the stratified split.
    "scikit-learn==1.9.1",
    # recipes are YAML.
    "pyyaml==6.0.3",
    # progress bars on training/calibration/benchmark steps.
    "tqdm==4.70.1",
    # plots in the self-contained HTML report (rendered to inline SVG, Agg backend, no display).
    "matplotlib==3.11.2",
]

# Ray: the cluster executor of sweeps (edgekit.executor_ray; `pip install edgekit[ray]`). The tests
# start a real local Ray cluster, so the dev extra installs it too (one pin, used twice).
RAY = "ray==2.60.0"

EXTRAS_REQUIRE = {
    "ray": [RAY],
    # hypothesis: the property-based fuzzers of the parsers that read users' files (tests/fuzz,
    # a short run in `make test`, 100,000 inputs in `make fuzz`). pytest-xdist: `make test` runs
    # the suite in one worker per core (a file's tests stay together: --dist loadfile).
    "dev": ["pytest==9.2.0", "pytest-xdist==3.8.0", "ruff==0.17.5", "hypothesis==6.170.15", RAY],
}

setup(
    name="edgekit",
    version=VERSION,
    description=(
        "Keras model -> small, fast, full-integer TFLite, verified and benchmarked on the device."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.14",
    packages=[
        "edgekit",
        "edgekit.compress",
        "edgekit.core",
        "edgekit.data",
        "edgekit.converters",
        "edgekit.models",
        "device_bench",
        "device_bench.targets",
    ],
    package_dir={
        "edgekit": "edgekit",
        "edgekit.converters": "converters",
        "edgekit.models": "models",
        "device_bench": "device_bench",
    },
    # The TCG plugin's C source is compiled on the user's machine by device_bench.insn_plugin (its
    # qemu-plugin.h header is GPL and fetched at set-up time); no binary is shipped.
    package_data={"device_bench": ["qemu_plugin/insn_count.c"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["edgekit = edgekit.cli:main"]},
)

"""Keras -> TFLite conversion, calibration, inspection and verification (``edgekit.converters``).

Typical use::

    from edgekit.converters import ConversionConfig, Mode, convert_keras, select_calibration

    samples, indices = select_calibration(x_train, num_samples=200, seed=0)
    blob = convert_keras(model, ConversionConfig(mode=Mode.INT8), representative=samples)
    result = inspect_tflite(path)              # ops, dtypes, size, full_integer
    check = verify_tflite(path, x_test, y_test, reference=model)

Importing this package does not import TensorFlow; :func:`convert_keras` loads it when called.
"""

from .calibration import (
    CALIBRATION_SCHEMA,
    calibration_record_path,
    load_calibration_record,
    save_calibration_record,
    select_calibration,
)
from .inspection import InspectionResult, format_inspection, inspect_tflite, weight_sparsity
from .modes import ConversionConfig, IOType, Mode, convert_keras
from .verify import VerificationResult, run_tflite, verify_tflite

__all__ = [
    "CALIBRATION_SCHEMA",
    "ConversionConfig",
    "IOType",
    "InspectionResult",
    "Mode",
    "VerificationResult",
    "calibration_record_path",
    "convert_keras",
    "format_inspection",
    "inspect_tflite",
    "load_calibration_record",
    "run_tflite",
    "save_calibration_record",
    "select_calibration",
    "verify_tflite",
    "weight_sparsity",
]

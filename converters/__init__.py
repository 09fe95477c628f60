"""Keras -> TFLite conversion, calibration, inspection and verification (``edgekit.converters``).

Typical use::

    from edgekit.converters import ConversionConfig, Mode, convert_keras, select_calibration

    samples, indices = select_calibration(x_train, num_samples=200, seed=0)
    blob = convert_keras(model, ConversionConfig(mode=Mode.INT8), representative=samples)
    result = inspect_tflite(path)              # ops, dtypes, size, full_integer, macs, params
    work = keras_work(model)                   # the same MACs, counted from the Keras layers
    check = verify_tflite(path, x_test, y_test, reference=model)

Calibration samples can also come from files, image folders and streams
(:func:`calibration_source`); :func:`debug_layers` ranks the layers by their own quantization
error, :func:`selective_quantize` keeps the worst ones in float until an accuracy budget holds,
and :func:`check_xnnpack_sparse` tells whether XNNPACK would run a model with sparse kernels.

Importing this package does not import TensorFlow; the functions that need it load it when called.
"""

from .calibration import (
    CALIBRATION_SCHEMA,
    calibration_record_path,
    load_calibration_record,
    save_calibration_record,
    select_calibration,
)
from .calibration_sources import (
    ArraySource,
    CalibrationSamples,
    CalibrationSource,
    CalibrationSpec,
    ImageFolderSource,
    InputSpec,
    Normalization,
    StreamSource,
    calibration_source,
    model_input_specs,
)
from .inspection import InspectionResult, format_inspection, inspect_tflite, weight_sparsity
from .modes import (
    INT8_ONLY,
    ConversionConfig,
    IOType,
    Mode,
    convert_keras,
    is_qat_model,
    require_int8,
)
from .quant_debug import (
    QUANT_DEBUG_SCHEMA,
    QuantDebugResult,
    calibrate,
    debug_layers,
    format_quant_debug,
    quantize_calibrated,
)
from .selective import SelectiveResult, format_selective, quick_latency_ms, selective_quantize
from .to_file import convert_to_file
from .verify import VerificationResult, run_tflite, verify_tflite
from .work import format_macs, keras_work, tflite_work
from .xnnpack_sparse import SparseCheck, check_xnnpack_sparse, format_xnnpack_sparse

__all__ = [
    "CALIBRATION_SCHEMA",
    "INT8_ONLY",
    "QUANT_DEBUG_SCHEMA",
    "ArraySource",
    "CalibrationSamples",
    "CalibrationSource",
    "CalibrationSpec",
    "ConversionConfig",
    "IOType",
    "ImageFolderSource",
    "InputSpec",
    "InspectionResult",
    "Mode",
    "Normalization",
    "QuantDebugResult",
    "SelectiveResult",
    "SparseCheck",
    "StreamSource",
    "VerificationResult",
    "calibrate",
    "calibration_record_path",
    "calibration_source",
    "check_xnnpack_sparse",
    "convert_keras",
    "convert_to_file",
    "debug_layers",
    "format_inspection",
    "format_macs",
    "format_quant_debug",
    "format_selective",
    "format_xnnpack_sparse",
    "inspect_tflite",
    "is_qat_model",
    "keras_work",
    "load_calibration_record",
    "model_input_specs",
    "quantize_calibrated",
    "quick_latency_ms",
    "require_int8",
    "run_tflite",
    "save_calibration_record",
    "select_calibration",
    "selective_quantize",
    "tflite_work",
    "verify_tflite",
    "weight_sparsity",
]

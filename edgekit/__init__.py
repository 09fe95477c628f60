"""edgekit: Keras model -> small, fast, full-integer TFLite, verified and benchmarked on the device.

Importing ``edgekit`` is cheap: TensorFlow loads only when a stage that needs it runs
(``edgekit._keras`` selects tf_keras for tfmot before TensorFlow is imported).
"""

__version__ = "0.1.0"

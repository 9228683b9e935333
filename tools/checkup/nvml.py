"""The few NVML queries the selftest needs (driver version, the hardware JPEG decoder), through ctypes: no
pynvml package is needed, and a machine without the NVIDIA driver simply has no NVML.

NVML API (docs.nvidia.com/deploy/nvml-api): nvmlInit_v2, nvmlSystemGetDriverVersion,
nvmlDeviceGetHandleByIndex_v2, nvmlDeviceGetJpgUtilization(device, *utilization, *samplingPeriodUs) -- the
NVJPG engines' utilisation in percent; NVML_ERROR_NOT_SUPPORTED on a GPU without them (V100, T4, A10, L4 ...).
"""
from __future__ import annotations

import ctypes

NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3


class Nvml:
    """An initialised NVML, or `error` saying why there is none."""

    def __init__(self) -> None:
        self.lib, self.error = None, ""
        try:
            lib = ctypes.CDLL("libnvidia-ml.so.1")
            code = lib.nvmlInit_v2()
        except (OSError, AttributeError) as error:
            self.error = f"no NVML ({error})"
            return
        if code != NVML_SUCCESS:
            self.error = f"nvmlInit failed (code {code})"
            return
        self.lib = lib

    def driver_version(self) -> str | None:
        if self.lib is None:
            return None
        buffer = ctypes.create_string_buffer(96)
        if self.lib.nvmlSystemGetDriverVersion(buffer, ctypes.c_uint(96)) != NVML_SUCCESS:
            return None
        return buffer.value.decode()

    def _handle(self, index: int) -> ctypes.c_void_p | None:
        handle = ctypes.c_void_p()
        if self.lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle)) != NVML_SUCCESS:
            return None
        return handle

    def jpeg_utilization(self, index: int) -> tuple[int | None, str]:
        """(percent, "") of the NVJPG engines of NVML device `index`, or (None, why not)."""
        if self.lib is None:
            return None, self.error
        query = getattr(self.lib, "nvmlDeviceGetJpgUtilization", None)
        if query is None:
            return None, "this NVML has no nvmlDeviceGetJpgUtilization (driver older than R535?)"
        handle = self._handle(index)
        if handle is None:
            return None, f"NVML has no device {index}"
        percent, period = ctypes.c_uint(), ctypes.c_uint()
        code = query(handle, ctypes.byref(percent), ctypes.byref(period))
        if code == NVML_ERROR_NOT_SUPPORTED:
            return None, "not supported: this GPU has no hardware JPEG decoder (NVJPG)"
        if code != NVML_SUCCESS:
            return None, f"nvmlDeviceGetJpgUtilization failed (code {code})"
        return int(percent.value), ""

    def close(self) -> None:
        if self.lib is not None:
            self.lib.nvmlShutdown()
            self.lib = None

"""The one compiled module, the usage hot path's record reader (see its source). Optional:
where it cannot be built (no C compiler), the workers validate every record with pydantic,
which is slower but gives the same results."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "usage_monitor.adapters._records",
            ["services/usage_monitor/adapters/_records.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)

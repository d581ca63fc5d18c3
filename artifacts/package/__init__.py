"""The deployment package: a zip a client's engineer can deploy the same day. Needs neither
Django nor torch (builder.py takes plain inputs; artifacts.services.packages gathers them)."""
from .builder import PackageInputs, PackageResult, build_package, curve_summary

__all__ = ["PackageInputs", "PackageResult", "build_package", "curve_summary"]

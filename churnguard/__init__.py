"""churnguard: which customers you are about to lose, what each is worth, who to call first."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("churnguard")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

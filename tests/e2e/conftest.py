from tests.stack import stack_factory

__all__ = ["stack_factory"]

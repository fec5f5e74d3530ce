"""Falcon API (WSGI): thin resources over the core modules."""

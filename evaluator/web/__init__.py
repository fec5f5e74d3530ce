"""Server-rendered web pages (issue 13): Jinja2 templates over the same plain functions as the JSON API.

Resources here parse, call the function the JSON resource calls (so numbers and visibility
match the API exactly) and render; templates and static files ship as package data.
"""

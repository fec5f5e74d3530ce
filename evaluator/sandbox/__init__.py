"""Docker sandbox: specs, runner, framework images."""

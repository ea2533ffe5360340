"""The hello-world app and the launchers the FastCGI benchmark starts."""

"""Serving on well-kept servers: nginx in front (connections, slow clients, limits, deadlines), gunicorn
behind it (worker supervision), and our own code only for the model's requests (`app`)."""

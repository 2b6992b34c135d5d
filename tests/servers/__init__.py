"""Real servers the tests start on 127.0.0.1 with their own config, keys and free ports (OpenSSH's sshd)."""

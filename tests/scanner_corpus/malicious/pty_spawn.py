# expect: proc.pty
import pty

pty.spawn("/bin/bash")

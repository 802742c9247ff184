# expect: proc.os_system
import posix

posix.system("id")

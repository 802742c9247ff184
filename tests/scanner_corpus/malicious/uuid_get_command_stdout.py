# expect: proc.private_helper
import uuid

print(uuid._get_command_stdout("id"))

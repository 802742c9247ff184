# expect: proc.shell_helper
import pip

pip.main(["install", "totally-not-malware"])

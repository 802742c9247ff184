# expect: proc.shell_helper
import webbrowser

webbrowser.open("file:///etc/passwd")

# expect: proc.shell_helper
import pydoc

pydoc.pipepager("hello", "sh -c id")

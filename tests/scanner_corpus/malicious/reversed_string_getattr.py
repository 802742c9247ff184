# expect: proc.os_system
import os

getattr(os, "metsys"[::-1])("id")

# expect: proc.os_popen
import os

if sh := os.popen:
    sh("id")

# expect: proc.os_system
import os

getattr(os, "sys" + "tem")("nvidia-smi --gpu-reset")

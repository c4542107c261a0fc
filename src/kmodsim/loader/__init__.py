"""A model of the kernel's module loader (kernel/module/main.c ``load_module()``/``delete_module()``).

``model`` holds the rules, each named after the kernel function it mirrors; ``profiles`` the
per-version behaviour as data (6.1 verified on the real kernel, others from the sources);
``script`` the insmod/rmmod/modprobe script format; ``run`` ties them to a target kernel. The real
kernel answers the same scripts through :mod:`kmodsim.oracle`. See docs/loader.md.
"""

// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: soft and weak dependencies as modprobe follows them (tests/test_softdep.py).
 * It uses kmsd_dep (a modules.dep dependency); its softdeps name a module that has softdeps of its
 * own (kmsd_pre), an alias of modules.alias (kmsd-alias: kmsd_post), a name nothing answers to
 * (kmsd_nothere) and a module the kernel refuses (kmsd_refused); its weak dependency (kmsd_weak)
 * is never loaded by modprobe. MODULE_INFO(weakdep, ...) is what MODULE_WEAKDEP() expands to in
 * Linux 6.11+ (include/linux/module.h: "#define MODULE_WEAKDEP(_weakdep) MODULE_INFO(weakdep,
 * _weakdep)", e.g. in Debian's 6.12 headers); the 6.1 headers have no MODULE_WEAKDEP. */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/init.h>

extern int kmsd_dep_fn(int x);

static int mainopt;
module_param(mainopt, int, 0444);

static int __init kmsd_main_init(void)
{
	return kmsd_dep_fn(mainopt) < 0;
}

static void __exit kmsd_main_exit(void)
{
}

module_init(kmsd_main_init);
module_exit(kmsd_main_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodsim fixture: softdeps and a weakdep");
MODULE_SOFTDEP("pre: kmsd_pre post: kmsd-alias kmsd_nothere kmsd_refused");
MODULE_INFO(weakdep, "kmsd_weak");

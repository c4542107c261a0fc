// SPDX-License-Identifier: GPL-2.0
/*
 * kmodsim example (not kernel code): the glue of a "monolithic" KVM vendor module.
 *
 * In 6.1 both x86.c (kvm.ko's kvm_x86_init/kvm_x86_exit) and the vendor file (vmx.c, svm.c)
 * have their own module_init()/module_exit(). The monolithic build compiles them with
 * init_module/cleanup_module renamed (-D flags in the generated Kbuild), and this file provides
 * the module's one init: kvm's, then the vendor's; and its one exit, in reverse order.
 */
#include <linux/init.h>
#include <linux/module.h>

int kvm_mono_x86_init(void);
void kvm_mono_x86_exit(void);
int kvm_mono_vendor_init(void);
void kvm_mono_vendor_exit(void);

static int __init kvm_mono_init(void)
{
	int r = kvm_mono_x86_init();

	if (r)
		return r;
	/*
	 * No undo on failure: in 6.1 kvm_x86_init() only sets up MMU parameters and kvm_x86_exit()
	 * is empty (calling __exit code from __init code is a section mismatch, too).
	 */
	return kvm_mono_vendor_init();
}

static void __exit kvm_mono_exit(void)
{
	kvm_mono_vendor_exit();
	kvm_mono_x86_exit();
}

module_init(kvm_mono_init);
module_exit(kvm_mono_exit);

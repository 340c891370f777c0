"""Sans-I/O codec for the kernel's audit netlink protocol, shared by collector and simulator."""

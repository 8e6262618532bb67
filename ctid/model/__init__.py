"""The call model in CSTA terms (ECMA-269): devices, calls, connections, and the rules that
turn cardd channel events and CTI requests into CSTA events and channel commands.

A functional core: no sockets, no wall clock (time is passed in), exactly testable.
"""

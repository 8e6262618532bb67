"""Q.850 cause values: names, classes, and what a caller should hear for each.

Used both ways: causes received in DISCONNECT/RELEASE are reported as they are (with
their text), causes the application gives to a hangup are checked here first, and the
simulator's exchange picks the in-band tone for a cause from `tone_for`.
"""
from __future__ import annotations

# value -> (short name, text as ITU-T Q.850 words it)
CAUSES: dict[int, tuple[str, str]] = {
    1: ("unallocated_number", "Unallocated (unassigned) number"),
    2: ("no_route_to_network", "No route to specified transit network"),
    3: ("no_route_to_destination", "No route to destination"),
    6: ("channel_unacceptable", "Channel unacceptable"),
    7: ("call_awarded_delivered", "Call awarded and being delivered in an established channel"),
    16: ("normal_clearing", "Normal call clearing"),
    17: ("user_busy", "User busy"),
    18: ("no_user_responding", "No user responding"),
    19: ("no_answer", "No answer from user (user alerted)"),
    20: ("subscriber_absent", "Subscriber absent"),
    21: ("call_rejected", "Call rejected"),
    22: ("number_changed", "Number changed"),
    26: ("non_selected_user_clearing", "Non-selected user clearing"),
    27: ("destination_out_of_order", "Destination out of order"),
    28: ("invalid_number_format", "Invalid number format (address incomplete)"),
    29: ("facility_rejected", "Facility rejected"),
    30: ("response_to_status_enquiry", "Response to STATUS ENQUIRY"),
    31: ("normal_unspecified", "Normal, unspecified"),
    34: ("no_circuit_available", "No circuit/channel available"),
    38: ("network_out_of_order", "Network out of order"),
    41: ("temporary_failure", "Temporary failure"),
    42: ("switch_congestion", "Switching equipment congestion"),
    43: ("access_info_discarded", "Access information discarded"),
    44: ("requested_channel_unavailable", "Requested circuit/channel not available"),
    47: ("resource_unavailable", "Resource unavailable, unspecified"),
    49: ("quality_of_service_unavailable", "Quality of service not available"),
    50: ("facility_not_subscribed", "Requested facility not subscribed"),
    57: ("bearer_capability_not_authorized", "Bearer capability not authorized"),
    58: ("bearer_capability_not_available", "Bearer capability not presently available"),
    63: ("service_unavailable", "Service or option not available, unspecified"),
    65: ("bearer_capability_not_implemented", "Bearer capability not implemented"),
    66: ("channel_type_not_implemented", "Channel type not implemented"),
    69: ("facility_not_implemented", "Requested facility not implemented"),
    79: ("service_not_implemented", "Service or option not implemented, unspecified"),
    81: ("invalid_call_reference", "Invalid call reference value"),
    82: ("channel_does_not_exist", "Identified channel does not exist"),
    88: ("incompatible_destination", "Incompatible destination"),
    95: ("invalid_message", "Invalid message, unspecified"),
    96: ("mandatory_ie_missing", "Mandatory information element is missing"),
    97: ("message_type_nonexistent", "Message type non-existent or not implemented"),
    98: ("wrong_message", "Message not compatible with call state"),
    99: ("ie_nonexistent", "Information element non-existent or not implemented"),
    100: ("invalid_ie_contents", "Invalid information element contents"),
    101: ("wrong_call_state", "Message not compatible with call state"),
    102: ("recovery_on_timer_expiry", "Recovery on timer expiry"),
    111: ("protocol_error", "Protocol error, unspecified"),
    127: ("interworking", "Interworking, unspecified"),
}

BY_NAME: dict[str, int] = {name: value for value, (name, _) in CAUSES.items()}

# Q.850 classes by the cause value's upper bits.
_CLASSES = ((0, 31, "normal event"), (32, 47, "resource unavailable"),
            (48, 63, "service or option not available"),
            (64, 79, "service or option not implemented"),
            (80, 95, "invalid message"), (96, 111, "protocol error"),
            (112, 127, "interworking"))

# Named causes the PRI code uses.
NORMAL_CLEARING = 16
USER_BUSY = 17
NO_USER_RESPONDING = 18
NO_ANSWER = 19
CALL_REJECTED = 21
INVALID_NUMBER_FORMAT = 28
NO_CIRCUIT_AVAILABLE = 34
NETWORK_OUT_OF_ORDER = 38
TEMPORARY_FAILURE = 41
REQUESTED_CHANNEL_UNAVAILABLE = 44
CHANNEL_UNACCEPTABLE = 6
RECOVERY_ON_TIMER_EXPIRY = 102


class CauseError(ValueError):
    """A cause that is not a Q.850 value."""


def check(value) -> int:
    """A cause value 1..127 (as an int or its short name), or CauseError saying why not."""
    if isinstance(value, str):
        key = value.strip().lower()
        if key.isdigit():
            value = int(key)
        elif key in BY_NAME:
            return BY_NAME[key]
        else:
            raise CauseError(f"unknown Q.850 cause name {value!r}")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 127:
        raise CauseError(f"a Q.850 cause is a value 1-127, not {value!r}")
    return value


def name(value: int) -> str:
    """Short name ("user_busy"), or "cause_<n>" for values Q.850 leaves unassigned."""
    entry = CAUSES.get(value)
    return entry[0] if entry else f"cause_{value}"


def text(value: int) -> str:
    entry = CAUSES.get(value)
    return entry[1] if entry else f"Cause {value} (unassigned)"


def cause_class(value: int) -> str:
    for low, high, label in _CLASSES:
        if low <= value <= high:
            return label
    return "unknown"


def tone_for(value: int) -> str:
    """The in-band tone a caller hears before a release with this cause (China: busy for a
    busy subscriber, congestion for the network's failures, nothing special otherwise)."""
    if value == USER_BUSY:
        return "busy"
    if value in (NO_CIRCUIT_AVAILABLE, NETWORK_OUT_OF_ORDER, TEMPORARY_FAILURE, 42,
                 REQUESTED_CHANNEL_UNAVAILABLE, 47, 1, 3, 28):
        return "congestion"
    return "busy"

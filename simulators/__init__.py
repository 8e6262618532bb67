"""ctisim: the hardware simulator and the world behind the wires."""

"""ESP32 device simulator for the SQAL line: VL53L8CH + AS7341 samples over the sensor WebSocket."""

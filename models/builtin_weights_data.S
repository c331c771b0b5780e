/* The default model's weights, built into the library (models/weights/README.md says how they were
 * trained). .incbin keeps the file as it is: no generated C array, no tool beyond the assembler. */
    .section .rodata
    .balign 64
    .global retina_builtin_mnet025
    .hidden retina_builtin_mnet025
retina_builtin_mnet025:
    .incbin "models/weights/retinaface_mnet025.safetensors"
retina_builtin_mnet025_end:
    .balign 8
    .global retina_builtin_mnet025_size
    .hidden retina_builtin_mnet025_size
retina_builtin_mnet025_size:
    .quad retina_builtin_mnet025_end - retina_builtin_mnet025
    .section .note.GNU-stack,"",@progbits

// Add to your Android app module's build.gradle.kts: copies the model that passed its edgekit
// budgets into the app's assets before every build, and keeps it uncompressed in the APK so the
// TFLite interpreter can memory-map it.
//
// Expects the run folder of `edgekit run ... --out runs/ci` at the repository root.
val edgekitModel = rootProject.layout.projectDirectory.file("runs/ci/model_int8.tflite")

val copyEdgekitModel by tasks.registering(Copy::class) {
    description = "Copies the edgekit int8 model into the app's assets."
    from(edgekitModel)
    into(layout.projectDirectory.dir("src/main/assets"))
    rename { "model.tflite" }
}

tasks.named("preBuild") { dependsOn(copyEdgekitModel) }

android {
    androidResources {
        noCompress += "tflite"
    }
}

/** Limits of the outside world that nodeset checks before it calls anything that would refuse. */

/** EC2 refuses user data above 16 KB, counted before base64. */
export const USER_DATA_LIMIT = 16_384
